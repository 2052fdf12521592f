//! The status board: what the status page shows that is not a counter. Start-up and reload fill it
//! with the configuration in force ([`StatusBoard::config_loaded`]) and each reload's outcome
//! ([`StatusBoard::reload_finished`]); certificate sources (files, ACME) publish their
//! certificates ([`StatusBoard::publish_certificate`]). Readers take a cheap copy
//! ([`StatusBoard::snapshot`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use super::clock::unix_millis;
use crate::config::model::{Config, HostMatch};

/// Where a certificate comes from.
pub const SOURCE_FILE: &str = "file";

/// A listener as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerInfo {
    pub name: String,
    pub address: String,
    pub tls: bool,
}

/// A route as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    pub name: String,
    /// `None` = the default listener (https, or http when there is none).
    pub listener: Option<String>,
    /// Empty = any host.
    pub hosts: Vec<String>,
    pub path_prefix: String,
    pub strip_prefix: bool,
    /// Empty for a route that answers itself.
    pub upstream: String,
    /// What a route that answers itself answers: `redirect 301 TARGET` or `respond 200`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// A server of an upstream as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerInfo {
    pub address: String,
    pub weight: u32,
}

/// An upstream as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamInfo {
    pub name: String,
    pub balance: String,
    pub servers: Vec<ServerInfo>,
}

/// A certificate in service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    pub name: String,
    pub domains: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
    /// `file`, `acme`, `self-signed`.
    pub source: String,
    /// A sentence about renewal (`renews in 30 days`, `next attempt at ...`); `None` for files.
    pub renewal: Option<String>,
    /// The last issuance or renewal error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The outcome of the last reload attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadInfo {
    /// Unix milliseconds; `None` before the first reload.
    pub last_attempt_ms: Option<i64>,
    /// `SIGHUP`, `file change`, `admin`...
    pub last_trigger: Option<String>,
    /// `true` when the last attempt was applied.
    pub last_ok: Option<bool>,
    /// Errors of the last attempt (one per line, file:line:column first); empty on success.
    pub last_errors: Vec<String>,
    pub succeeded: u64,
    pub failed: u64,
}

/// Everything on the board at one moment.
#[derive(Debug, Clone, Default)]
pub struct Board {
    pub generation: u64,
    /// Unix milliseconds of the generation's installation.
    pub loaded_at_ms: i64,
    pub source: String,
    pub listeners: Vec<ListenerInfo>,
    pub routes: Vec<RouteInfo>,
    pub upstreams: Vec<UpstreamInfo>,
    pub certificates: BTreeMap<String, CertificateInfo>,
    pub reload: ReloadInfo,
}

/// The board behind a lock; every change makes a new copy, readers keep theirs.
#[derive(Debug, Default)]
pub struct StatusBoard {
    current: RwLock<Arc<Board>>,
}

impl StatusBoard {
    /// The board as it is now.
    pub fn snapshot(&self) -> Arc<Board> {
        self.current.read().clone()
    }

    fn update(&self, change: impl FnOnce(&mut Board)) {
        let mut guard = self.current.write();
        let mut next = Board::clone(&guard);
        change(&mut next);
        *guard = Arc::new(next);
    }

    /// Shows a configuration that is now in force as `generation` (start-up: 1; each reload:
    /// the new one). Certificates from files replace the previous file certificates; others
    /// stay. Returns the names of file certificates no longer listed.
    pub fn config_loaded(&self, config: &Config, generation: u64) -> Vec<String> {
        let files: Vec<CertificateInfo> = config
            .tls
            .certificates
            .iter()
            .map(|c| CertificateInfo {
                name: c.name.clone(),
                domains: c.dns_names.clone(),
                not_after: c.not_after,
                source: SOURCE_FILE.to_string(),
                renewal: None,
                last_error: None,
            })
            .collect();
        let mut stale = Vec::new();
        self.update(|board| {
            board.generation = generation;
            board.loaded_at_ms = unix_millis();
            board.source = config.source.display().to_string();
            board.listeners = config
                .listeners
                .iter()
                .map(|l| ListenerInfo {
                    name: l.name.clone(),
                    address: l.address.to_string(),
                    tls: l.tls,
                })
                .collect();
            board.routes = config.routes.iter().map(route_info).collect();
            board.upstreams = config
                .upstreams
                .values()
                .map(|u| UpstreamInfo {
                    name: u.name.clone(),
                    balance: snake_case(&format!("{:?}", u.balance)),
                    servers: u
                        .servers
                        .iter()
                        .map(|s| ServerInfo {
                            address: s.address.clone(),
                            weight: s.weight,
                        })
                        .collect(),
                })
                .collect();
            stale = board
                .certificates
                .values()
                .filter(|c| c.source == SOURCE_FILE && !files.iter().any(|f| f.name == c.name))
                .map(|c| c.name.clone())
                .collect();
            for name in &stale {
                board.certificates.remove(name);
            }
            for cert in &files {
                board.certificates.insert(cert.name.clone(), cert.clone());
            }
        });
        stale
    }

    /// Records a reload attempt: `Ok(generation)` when applied (call [`Self::config_loaded`]
    /// too), or the errors that refused it.
    pub fn reload_finished(&self, trigger: &str, result: &Result<u64, Vec<String>>) {
        self.update(|board| {
            let reload = &mut board.reload;
            reload.last_attempt_ms = Some(unix_millis());
            reload.last_trigger = Some(trigger.to_string());
            reload.last_ok = Some(result.is_ok());
            match result {
                Ok(_) => {
                    reload.succeeded += 1;
                    reload.last_errors.clear();
                }
                Err(errors) => {
                    reload.failed += 1;
                    reload.last_errors = errors.clone();
                }
            }
        });
    }

    /// Adds or replaces a certificate (ACME issuance, renewal, a placeholder).
    pub fn publish_certificate(&self, certificate: CertificateInfo) {
        self.update(|board| {
            board
                .certificates
                .insert(certificate.name.clone(), certificate);
        });
    }
}

/// `RoundRobin` → `round_robin` (the policy name as written in the file).
fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn route_info(route: &crate::config::model::Route) -> RouteInfo {
    RouteInfo {
        name: route.name.clone(),
        listener: route.listener.clone(),
        hosts: route
            .hosts
            .iter()
            .map(|h| match h {
                HostMatch::Exact(name) => name.clone(),
                HostMatch::Wildcard(suffix) => format!("*.{suffix}"),
            })
            .collect(),
        path_prefix: route.path_prefix.clone(),
        strip_prefix: route.strip_prefix,
        upstream: route.upstream().unwrap_or_default().to_string(),
        answer: answer_of(route),
    }
}

/// What a route that answers itself answers, in words.
fn answer_of(route: &crate::config::model::Route) -> Option<String> {
    use crate::config::model::{RouteAction, TemplatePart};
    match &route.action {
        RouteAction::Upstream(_) => None,
        RouteAction::Redirect(redirect) => {
            let target: String = redirect
                .to
                .parts
                .iter()
                .map(|part| match part {
                    TemplatePart::Literal(text) => text.clone(),
                    TemplatePart::Host => "{host}".into(),
                    TemplatePart::Path => "{path}".into(),
                    TemplatePart::Scheme => "{scheme}".into(),
                    TemplatePart::ClientIp => "{client_ip}".into(),
                    TemplatePart::RequestId => "{request_id}".into(),
                })
                .collect();
            Some(format!("redirect {} {target}", redirect.status))
        }
        RouteAction::Respond(response) => Some(format!("respond {}", response.status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_are_counted_and_keep_the_last_errors() {
        let board = StatusBoard::default();
        board.reload_finished(
            "SIGHUP",
            &Err(vec!["f.yaml:3:5: routes[0].upstream: no".into()]),
        );
        let shown = board.snapshot();
        assert_eq!(shown.reload.last_ok, Some(false));
        assert_eq!(shown.reload.last_errors.len(), 1);
        assert_eq!(shown.reload.last_trigger.as_deref(), Some("SIGHUP"));
        board.reload_finished("admin", &Ok(2));
        let shown = board.snapshot();
        assert_eq!(shown.reload.last_ok, Some(true));
        assert!(shown.reload.last_errors.is_empty());
        assert!(shown.reload.failed >= 1 && shown.reload.succeeded >= 1);
    }

    #[test]
    fn policy_names_are_written_as_in_the_file() {
        assert_eq!(snake_case("RoundRobin"), "round_robin");
        assert_eq!(snake_case("P2c"), "p2c");
        assert_eq!(snake_case("LeastInflight"), "least_inflight");
    }

    #[test]
    fn published_certificates_stay_listed() {
        let board = StatusBoard::default();
        board.publish_certificate(CertificateInfo {
            name: "unit-acme".into(),
            domains: vec!["a.test".into()],
            not_after: 2_000_000_000,
            source: "acme".into(),
            renewal: Some("renews in 60 days".into()),
            last_error: None,
        });
        assert_eq!(board.snapshot().certificates["unit-acme"].source, "acme");
    }
}
