//! Configuration: the YAML file → a validated [`model::Config`], with every error reported at once
//! as `file:line:column: key.path: message`.
//!
//! Loading is three steps: read the file; `validate` it into a draft (pure: `raw` mirrors the file
//! for serde, `spans` remembers where each key sits); `resolve` the draft (every DNS look-up and
//! file read the model needs). Both steps report into one list, so all errors come out together.
//! Only `model`, `error`, `duration` and `cidr` are public.

pub mod cidr;
mod draft;
pub mod duration;
pub mod error;
pub mod model;
mod raw;
mod report;
mod resolve;
mod spans;
mod validate;

use std::path::Path;

pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};
pub use model::Config;

/// Reads, validates and resolves the configuration file at `path`.
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

/// Validates and resolves `source` as if read from `path`: `path` names the file in messages,
/// and relative certificate, key and `state_dir` paths resolve against its directory. A file
/// that fails validation still has its files and host names looked up, for their errors.
pub fn load_str(source: &str, path: &Path) -> Result<model::Config, error::ConfigErrors> {
    let validate::Validated { draft, mut report } = validate::validate(source, path)?;
    let config = resolve::resolve(draft, &mut report);
    report.finish(config)
}
