//! Raw YAML → validated [`Config`]: parses once, decodes each section and element on its own, runs
//! the semantic checks and collects every error (file, line, column, key path) before giving up.

mod acme;
mod api_keys;
mod balancing;
mod basic_auth;
mod cluster;
mod decode;
mod hosts;
mod inference;
mod listeners;
mod observe;
mod routes;
mod security;
mod tls;
mod upstreams;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_acme;
#[cfg(test)]
mod tests_balancing;
#[cfg(test)]
mod tests_elements;
#[cfg(test)]
mod tests_listeners;
#[cfg(test)]
mod tests_security;

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::duration::parse_duration;
use super::error::{ConfigError, ConfigErrors};
use super::model::{Config, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STATE_DIR};
use super::raw::{RawShutdown, TOP_LEVEL_KEYS};
use super::spans::{Position, SpanIndex};

/// Validates `source`, read from `file` (used in messages and to resolve relative paths).
pub fn validate(source: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let document: Value = match serde_yaml::from_str(source) {
        Ok(document) => document,
        Err(error) => {
            let spans = SpanIndex::build(source);
            return Err(ConfigErrors(vec![syntax_error(file, &error, &spans)]));
        }
    };
    let mut checker = Checker::new(file, source);
    if !matches!(document, Value::Mapping(_) | Value::Null) {
        checker.at_value(
            "",
            "expected a mapping of sections (listeners, routes, upstreams, ...)",
        );
        return Err(ConfigErrors::sorted(checker.errors));
    }
    let sections = checker.sections(&document, "", TOP_LEVEL_KEYS);
    let section = |name: &str| {
        sections
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    };

    let state_dir = match checker.decode::<String>(section("state_dir"), "state_dir") {
        Some(dir) if dir.is_empty() => {
            checker.at_value("state_dir", "must not be empty");
            PathBuf::new()
        }
        Some(dir) => checker.resolve(&dir),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let workers = checker.workers(section("workers"));
    let listeners = listeners::check(&mut checker, section("listeners"));
    let admin = checker.admin(section("admin"), &listeners.listeners);
    let tls = tls::check(&mut checker, section("tls"));
    let (acme, providers) = acme::check(&mut checker, section("acme"));
    let acme_present = section("acme").is_some_and(|v| !v.is_null());
    acme::check_certificates(
        &mut checker,
        &tls,
        &providers,
        acme_present,
        &listeners.listeners,
    );
    let shutdown_grace = checker.shutdown_grace(section("shutdown"));
    let log = checker.log(section("log"));
    let trusted_proxies = checker.trusted_proxies(section("trusted_proxies"));
    let max_connections_per_ip =
        match checker.decode::<u32>(section("max_connections_per_ip"), "max_connections_per_ip") {
            Some(0) => {
                checker.at_value("max_connections_per_ip", "must be at least 1");
                None
            }
            other => other,
        };
    let cluster = checker.cluster(section("cluster"));
    let upstreams = upstreams::check(&mut checker, section("upstreams"));
    let routes = routes::check(
        &mut checker,
        section("routes"),
        &upstreams.names,
        &listeners,
    );

    if !checker.errors.is_empty() {
        return Err(ConfigErrors::sorted(checker.errors));
    }
    Ok(Config {
        source: file.to_path_buf(),
        state_dir,
        workers,
        listeners: listeners.listeners,
        admin,
        tls,
        acme,
        routes,
        upstreams: upstreams.upstreams,
        shutdown_grace,
        log,
        trusted_proxies,
        max_connections_per_ip,
        cluster,
    })
}

/// A YAML syntax error: one error at serde_yaml's position (a repeated key, which serde_yaml
/// reports without one, at the repeat).
fn syntax_error(file: &Path, error: &serde_yaml::Error, spans: &SpanIndex) -> ConfigError {
    let mut message = error.to_string();
    if message.contains("duplicate entry with key") {
        if let Some((key, position)) = spans.first_duplicate() {
            return ConfigError {
                file: file.to_path_buf(),
                line: position.line,
                column: position.column,
                key: key.to_string(),
                message: format!("duplicate key `{key}`: given twice in the same mapping"),
            };
        }
    }
    let (line, column) = match error.location() {
        Some(location) => {
            let at = format!(" at line {} column {}", location.line(), location.column());
            message = message.replacen(&at, "", 1);
            (location.line().max(1), location.column().max(1))
        }
        None => (1, 1),
    };
    ConfigError {
        file: file.to_path_buf(),
        line,
        column,
        key: String::new(),
        message: format!("invalid YAML: {message}"),
    }
}

/// Validation state: where positions come from and the errors found so far.
pub(super) struct Checker {
    file: PathBuf,
    /// The config file's directory, against which relative paths resolve.
    base_dir: PathBuf,
    source: String,
    /// Positions are needed only to report an error: indexed on first use, so a valid file (every
    /// reload that succeeds) pays for one YAML parse, not two.
    spans: std::cell::OnceCell<SpanIndex>,
    errors: Vec<ConfigError>,
}

impl Checker {
    fn new(file: &Path, source: &str) -> Self {
        Self {
            file: file.to_path_buf(),
            base_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            source: source.to_string(),
            spans: std::cell::OnceCell::new(),
            errors: Vec::new(),
        }
    }

    /// The position index of the source (built now if this is the first error).
    fn spans(&self) -> &SpanIndex {
        self.spans.get_or_init(|| SpanIndex::build(&self.source))
    }

    fn push(&mut self, key: &str, position: Position, message: String) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: position.line,
            column: position.column,
            key: key.to_string(),
            message,
        });
    }

    /// An error about the key at `path` itself (unknown, unsupported, missing pieces).
    pub(super) fn at_key(&mut self, path: &str, message: impl Into<String>) {
        let position = self.spans().key_position(path);
        self.push(path, position, message.into());
    }

    /// An error about the value at `path`.
    pub(super) fn at_value(&mut self, path: &str, message: impl Into<String>) {
        let position = self.spans().value_position(path);
        self.push(path, position, message.into());
    }

    /// The line of the value at `path`, for "first defined at line N" hints.
    pub(super) fn line_of(&self, path: &str) -> usize {
        self.spans().value_position(path).line
    }

    /// A path from the file, relative ones taken against the config file's directory.
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        // `./x` and `.` add nothing but noise to paths shown in logs and errors.
        self.base_dir
            .join(path)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    }

    fn workers(&mut self, value: Option<&Value>) -> usize {
        let default = || std::thread::available_parallelism().map_or(1, |n| n.get());
        match self.decode::<usize>(value, "workers") {
            Some(0) => {
                self.at_value("workers", "must be at least 1");
                default()
            }
            Some(workers) => workers,
            None => default(),
        }
    }

    fn shutdown_grace(&mut self, value: Option<&Value>) -> std::time::Duration {
        let text = self
            .decode::<RawShutdown>(value, "shutdown")
            .and_then(|raw| raw.grace_period);
        let Some(text) = text else {
            return DEFAULT_SHUTDOWN_GRACE;
        };
        match parse_duration(&text) {
            Ok(grace) => grace,
            Err(message) => {
                self.at_value("shutdown.grace_period", message);
                DEFAULT_SHUTDOWN_GRACE
            }
        }
    }
}
