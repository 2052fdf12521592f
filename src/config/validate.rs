//! Raw YAML → a validated [`Draft`]: parses once, decodes each section and element on its own, runs
//! the semantic checks and collects every error (file, line, column, key path) before giving up.
//! Pure: files and host names the draft names are left to [`super::resolve`].

mod acme;
mod api_keys;
mod balancing;
mod basic_auth;
mod cluster;
mod countries;
mod decode;
mod header_rules;
mod hosts;
mod inference;
mod listeners;
mod matching;
mod observe;
mod peer_tls;
mod routes;
mod rules;
mod security;
mod templates;
mod tls;
mod upstreams;

#[cfg(test)]
pub(super) mod tests;
#[cfg(test)]
mod tests_acme;
#[cfg(test)]
mod tests_balancing;
#[cfg(test)]
mod tests_elements;
#[cfg(test)]
mod tests_listeners;
#[cfg(test)]
mod tests_peer_tls;
#[cfg(test)]
mod tests_rules;
#[cfg(test)]
mod tests_security;

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::draft::{CheckedFile, CheckedFileKind, Draft, DraftGeoip, NamedFile};
use super::duration::parse_duration;
use super::error::ConfigErrors;
use super::model::{DEFAULT_SHUTDOWN_GRACE, DEFAULT_STATE_DIR};
use super::raw::{RawGeoip, RawShutdown, TOP_LEVEL_KEYS};
use super::report::Report;
use super::spans::{Position, SpanIndex};

/// A validated draft and the errors found in it; a draft with errors still lists every element
/// that decoded, for their look-ups.
pub(super) struct Validated {
    pub draft: Draft,
    pub report: Report,
}

/// Validates `source`, read from `file` (used in messages and to resolve relative paths), into a
/// draft for [`super::resolve`]. `Err` only when the file is not a YAML mapping at all.
pub(super) fn validate(source: &str, file: &Path) -> Result<Validated, ConfigErrors> {
    let mut report = Report::new(file, source);
    let document: Value = match serde_yaml::from_str(source) {
        Ok(document) => document,
        Err(error) => {
            let (key, position, message) = syntax_error(&error, report.spans());
            report.push(&key, position, message);
            return Err(report.into_errors());
        }
    };
    if !matches!(document, Value::Mapping(_) | Value::Null) {
        report.at_value(
            "",
            "expected a mapping of sections (listeners, routes, upstreams, ...)",
        );
        return Err(report.into_errors());
    }
    let mut checker = Checker::new(file, report);
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
        Some(dir) => checker.file_path(&dir),
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
    let otel = checker.otel(section("otel"));
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
    let geoip = checker.decode::<RawGeoip>(section("geoip"), "geoip");
    let routes = routes::check(
        &mut checker,
        section("routes"),
        &upstreams.names,
        &listeners,
        geoip.is_some(),
    );
    // The database is read only when a route refuses or admits by country.
    let geoip = geoip
        .filter(|_| routes.iter().any(|r| r.route.rules.countries.is_some()))
        .map(|raw| DraftGeoip {
            at: "geoip.database".into(),
            database: checker.named_file(&raw.database),
        });

    let draft = Draft {
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
        client_auths: listeners.client_auths,
        geoip,
        otel,
        checked_files: checker.checked_files,
    };
    Ok(Validated {
        draft,
        report: checker.report,
    })
}

/// A YAML syntax error: `(key, position, message)` at serde_yaml's position (a repeated key,
/// which serde_yaml reports without one, at the repeat).
fn syntax_error(error: &serde_yaml::Error, spans: &SpanIndex) -> (String, Position, String) {
    let mut message = error.to_string();
    if message.contains("duplicate entry with key") {
        if let Some((key, position)) = spans.first_duplicate() {
            let message = format!("duplicate key `{key}`: given twice in the same mapping");
            return (key.to_string(), position, message);
        }
    }
    let position = match error.location() {
        Some(location) => {
            let at = format!(" at line {} column {}", location.line(), location.column());
            message = message.replacen(&at, "", 1);
            Position {
                line: location.line().max(1),
                column: location.column().max(1),
            }
        }
        None => Position::START,
    };
    (String::new(), position, format!("invalid YAML: {message}"))
}

/// Validation state: where errors go and the files to check once validation is done.
pub(super) struct Checker {
    report: Report,
    /// The config file's directory, against which relative paths resolve.
    base_dir: PathBuf,
    checked_files: Vec<CheckedFile>,
}

impl Checker {
    fn new(file: &Path, report: Report) -> Self {
        Self {
            report,
            base_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            checked_files: Vec::new(),
        }
    }

    /// The position index of the source (built now if this is the first error).
    fn spans(&self) -> &SpanIndex {
        self.report.spans()
    }

    /// Errors so far, to tell whether a check added any.
    pub(super) fn error_count(&self) -> usize {
        self.report.error_count()
    }

    /// An error about the key at `path` itself (unknown, unsupported, missing pieces).
    pub(super) fn at_key(&mut self, path: &str, message: impl Into<String>) {
        self.report.at_key(path, message);
    }

    /// An error about the value at `path`.
    pub(super) fn at_value(&mut self, path: &str, message: impl Into<String>) {
        self.report.at_value(path, message);
    }

    /// The line of the value at `path`, for "first defined at line N" hints.
    pub(super) fn line_of(&self, path: &str) -> usize {
        self.report.line_of(path)
    }

    /// A path from the file, relative ones taken against the config file's directory.
    pub(super) fn file_path(&self, path: &str) -> PathBuf {
        // `./x` and `.` add nothing but noise to paths shown in logs and errors.
        self.base_dir
            .join(path)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    }

    /// A file named in the configuration: as written, and the path it means.
    pub(super) fn named_file(&self, written: &str) -> NamedFile {
        NamedFile {
            written: written.to_string(),
            path: self.file_path(written),
        }
    }

    /// Asks for the file at `path`, named by the key at `at`, to be checked once validation is
    /// done (by [`super::resolve`]).
    pub(super) fn check_file(&mut self, at: &str, path: PathBuf, kind: CheckedFileKind) {
        self.checked_files.push(CheckedFile {
            at: at.to_string(),
            path,
            kind,
        });
    }

    /// `workers`; `None` when not given (one per core, asked of the system when resolving).
    fn workers(&mut self, value: Option<&Value>) -> Option<usize> {
        match self.decode::<usize>(value, "workers") {
            Some(0) => {
                self.at_value("workers", "must be at least 1");
                None
            }
            other => other,
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
