//! Configuration: the YAML file → a validated [`model::Config`], with every error reported at once
//! as `file:line:column: key.path: message`.
//!
//! `raw` mirrors the file for serde, `spans` remembers where each key sits, `validate` turns raw
//! into the model; only `model`, `error` and `duration` are public.

pub mod cidr;
pub mod duration;
pub mod error;
pub mod model;
mod raw;
mod spans;
mod validate;

use std::path::Path;

pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};
pub use model::Config;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<model::Config, error::ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(source) => load_str(&source, path),
        Err(error) => Err(ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            key: String::new(),
            message: format!("cannot read the configuration file: {error}"),
        }])),
    }
}

/// Validates `source` as if read from `path`: `path` names the file in messages, and relative
/// certificate, key and `state_dir` paths resolve against its directory.
pub fn load_str(source: &str, path: &Path) -> Result<model::Config, error::ConfigErrors> {
    validate::validate(source, path)
}
