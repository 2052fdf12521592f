//! Per-server status as plain data (state, admin state and runtime weight, in-flight, sticky
//! count, recent errors, what an inference server last said about itself) for the admin listener and the observability work,
//! and its minimal JSON rendering for `/status.json`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::admin::AdminChange;
use super::members::UpstreamPool;
use super::server::RecentError;
use crate::balance::sticky::format_id;
use crate::inference::signals::Load;

/// One upstream's status.
#[derive(Debug, Clone)]
pub struct UpstreamStatus {
    pub name: String,
    pub balance: &'static str,
    /// Requests waiting for a free server.
    pub queued: u32,
    pub servers: Vec<ServerStatus>,
    /// `cache_aware`: the busiest prompt prefixes (tenants) now and the servers carrying each.
    pub prefixes: Vec<PrefixStatus>,
}

/// One prompt prefix (a tenant's system prompt) and the servers carrying it, home first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixStatus {
    /// The prefix's first block hash, in hex.
    pub key: String,
    /// (server address, requests in the window), home first.
    pub holders: Vec<(String, u64)>,
}

/// Prefixes listed in status at most.
pub const STATUS_PREFIXES: usize = 16;

/// One server's status.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    /// The opaque id the sticky cookie carries.
    pub id: String,
    pub address: String,
    /// `up`, `down`, `ejected`, `draining` (in the file, by the admin API or at runtime weight
    /// 0) or `maint` (by the admin API).
    pub state: &'static str,
    /// `up`, `down` or `ejected`: the health verdict alone, whatever the admin state.
    pub health: &'static str,
    /// `ready`, `drain` or `maint`: what the admin API set.
    pub admin_state: &'static str,
    /// The weight the admin API set, if any (`weight` is the configured one).
    pub runtime_weight: Option<u32>,
    /// The last change through the admin API.
    pub admin_change: Option<AdminChange>,
    pub inflight: u32,
    pub max_inflight: Option<u32>,
    pub weight: u32,
    /// The weight in force now (the runtime one if set; lower during slow start).
    pub effective_weight: f64,
    pub requests: u64,
    pub failures: u64,
    pub checks: u64,
    pub sticky_hits: u64,
    /// Live client_ip/header table entries pinned to this server.
    pub sticky_entries: usize,
    pub discovered: bool,
    pub recent_errors: Vec<RecentError>,
    /// The models the server serves (configured, else its last `/v1/models`); `None` while unknown.
    pub models: Option<Arc<[String]>>,
    /// Its last metrics reading (inference servers) and how old it is.
    pub load: Option<(Load, Duration)>,
    /// The state of its KV-cache event stream, when it publishes one (`exact`, or why the
    /// approximate index decides for it).
    pub kv_events: Option<&'static str>,
}

impl UpstreamPool {
    /// A status snapshot of every member.
    pub fn status(&self, balance: &'static str, slow_start: Option<Duration>) -> UpstreamStatus {
        let now = Instant::now();
        let entries: HashMap<u64, usize> = self.sticky.lock().count_by_server(now);
        let servers = self
            .members()
            .iter()
            .map(|m| {
                let health = m.state.health();
                let verdict = health.availability(now).as_str();
                let state = match verdict {
                    _ if m.in_maintenance() => "maint",
                    "up" if m.draining() => "draining",
                    other => other,
                };
                ServerStatus {
                    id: format_id(m.id),
                    address: m.address.to_string(),
                    state,
                    health: verdict,
                    admin_state: m.admin_state().as_str(),
                    runtime_weight: m.state.admin.weight(),
                    admin_change: m.state.admin.last_change(),
                    inflight: m.state.inflight(),
                    max_inflight: m.max_inflight,
                    weight: m.weight,
                    effective_weight: f64::from(m.current_weight())
                        * health.weight_factor(slow_start, now),
                    requests: m.state.requests(),
                    failures: m.state.failures(),
                    checks: health.checks_done(),
                    sticky_hits: m.state.sticky_hits(),
                    sticky_entries: entries.get(&m.id).copied().unwrap_or(0),
                    discovered: m.discovered,
                    recent_errors: m.state.recent_errors(),
                    models: m.served_models(),
                    load: m
                        .state
                        .signals
                        .last_load()
                        .map(|(load, at)| (load, now.saturating_duration_since(at))),
                    kv_events: m
                        .kv_events
                        .as_ref()
                        .map(|_| m.state.kv.lock().state().as_str()),
                }
            })
            .collect();
        let members = self.members();
        let address = |id: u64| {
            members
                .iter()
                .find(|m| m.id == id)
                .map_or_else(|| format_id(id), |m| m.address.to_string())
        };
        let prefixes = if balance == "cache_aware" {
            self.busiest_prefixes(STATUS_PREFIXES, now)
                .into_iter()
                .map(|p| PrefixStatus {
                    key: format!("{:016x}", p.key),
                    holders: p
                        .holders
                        .into_iter()
                        .map(|(id, requests)| (address(id), requests))
                        .collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        UpstreamStatus {
            name: self.name.to_string(),
            balance,
            queued: self.queued(),
            servers,
            prefixes,
        }
    }
}

/// A JSON string literal.
fn quote(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"generation":N,"upstreams":[...]}`.
pub fn to_json(generation: u64, upstreams: &[UpstreamStatus]) -> String {
    let mut out = format!("{{\"generation\":{generation},\"upstreams\":[");
    for (i, u) in upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        quote(&mut out, &u.name);
        let _ = write!(
            out,
            ",\"balance\":\"{}\",\"queued\":{},\"servers\":[",
            u.balance, u.queued
        );
        for (j, s) in u.servers.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            server_json(&mut out, s);
        }
        out.push_str("],\"prefixes\":[");
        for (j, p) in u.prefixes.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            prefix_json(&mut out, p);
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

/// `{"key":"..","spread":N,"holders":[{"server":"..","requests":N},..]}`.
fn prefix_json(out: &mut String, p: &PrefixStatus) {
    out.push_str("{\"key\":");
    quote(out, &p.key);
    let _ = write!(out, ",\"spread\":{},\"holders\":[", p.holders.len());
    for (i, (server, requests)) in p.holders.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"server\":");
        quote(out, server);
        let _ = write!(out, ",\"requests\":{requests}}}");
    }
    out.push_str("]}");
}

fn server_json(out: &mut String, s: &ServerStatus) {
    out.push_str("{\"id\":");
    quote(out, &s.id);
    out.push_str(",\"address\":");
    quote(out, &s.address);
    let max = s
        .max_inflight
        .map_or_else(|| "null".to_string(), |m| m.to_string());
    let _ = write!(
        out,
        ",\"state\":\"{}\",\"inflight\":{},\"max_inflight\":{max},\"weight\":{},\"effective_weight\":{:.3},\"requests\":{},\"failures\":{},\"checks\":{},\"sticky_hits\":{},\"sticky_entries\":{},\"discovered\":{}",
        s.state,
        s.inflight,
        s.weight,
        s.effective_weight,
        s.requests,
        s.failures,
        s.checks,
        s.sticky_hits,
        s.sticky_entries,
        s.discovered
    );
    out.push_str(",\"admin_state\":");
    quote(out, s.admin_state);
    out.push_str(",\"runtime_weight\":");
    match s.runtime_weight {
        Some(weight) => {
            let _ = write!(out, "{weight}");
        }
        None => out.push_str("null"),
    }
    signals_json(out, s);
    out.push_str(",\"admin_change\":");
    match &s.admin_change {
        Some(change) => {
            let _ = write!(out, "{{\"at_unix_ms\":{},\"by\":", change.at_unix_ms);
            quote(out, &change.by);
            out.push_str(",\"what\":");
            quote(out, &change.what);
            out.push('}');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"recent_errors\":[");
    for (k, e) in s.recent_errors.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"at_unix_ms\":{},\"kind\":\"{}\"}}",
            e.at_unix_ms, e.kind
        );
    }
    out.push_str("]}");
}

/// `,"models":[..],"waiting":N,"running":N,"kv_usage":F,"signal_age_ms":N`, each `null` when
/// unknown.
fn signals_json(out: &mut String, s: &ServerStatus) {
    out.push_str(",\"models\":");
    match &s.models {
        Some(models) => {
            out.push('[');
            for (i, model) in models.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quote(out, model);
            }
            out.push(']');
        }
        None => out.push_str("null"),
    }
    let load = s.load.as_ref();
    let number = |v: Option<f64>| match v {
        Some(v) if v.is_finite() => v.to_string(),
        _ => "null".to_string(),
    };
    match s.kv_events {
        Some(state) => {
            let _ = write!(out, ",\"kv_events\":\"{state}\"");
        }
        None => out.push_str(",\"kv_events\":null"),
    }
    let _ = write!(
        out,
        ",\"waiting\":{},\"running\":{},\"kv_usage\":{},\"signal_age_ms\":{}",
        number(load.map(|(l, _)| l.waiting)),
        number(load.map(|(l, _)| l.running)),
        number(load.and_then(|(l, _)| l.kv_usage)),
        load.map_or_else(
            || "null".to_string(),
            |(_, age)| age.as_millis().to_string()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Server;

    #[test]
    fn renders_json() {
        let pool = UpstreamPool::new("o\"w");
        pool.set_configured(
            &[Server {
                address: "127.0.0.1:9".into(),
                socket: ([127, 0, 0, 1], 9).into(),
                weight: 2,
                max_inflight: Some(4),
                drain: true,
                models: None,
                kv_events: None,
            }],
            false,
            None,
        );
        let status = pool.status("round_robin", None);
        let json = to_json(3, &[status]);
        assert!(
            json.starts_with("{\"generation\":3,\"upstreams\":[{\"name\":\"o\\\"w\""),
            "{json}"
        );
        assert!(json.contains("\"state\":\"draining\",\"inflight\":0,\"max_inflight\":4,\"weight\":2,\"effective_weight\":2.000"), "{json}");
        assert!(
            json.ends_with("\"recent_errors\":[]}],\"prefixes\":[]}]}\n"),
            "{json}"
        );
        assert!(json.contains("\"models\":null,\"kv_events\":null,\"waiting\":null,\"running\":null,\"kv_usage\":null,\"signal_age_ms\":null,"), "{json}");
        assert!(
            json.contains("\"admin_state\":\"ready\",\"runtime_weight\":null,"),
            "{json}"
        );
        assert!(json.contains("\"admin_change\":null,"), "{json}");
    }

    #[test]
    fn renders_runtime_admin_settings() {
        let pool = UpstreamPool::new("u");
        pool.set_configured(&[Server::new(([127, 0, 0, 1], 9).into(), 2)], false, None);
        pool.set_runtime_weight("127.0.0.1:9", 5, "127.0.0.1:40000")
            .expect("weight");
        pool.set_admin_state("127.0.0.1:9", crate::pool::AdminState::Maint, "[::1]:1")
            .expect("state");
        let json = to_json(1, &[pool.status("round_robin", None)]);
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let server = &parsed["upstreams"][0]["servers"][0];
        assert_eq!(server["state"], "maint");
        assert_eq!(server["admin_state"], "maint");
        assert_eq!(server["weight"], 2);
        assert_eq!(server["runtime_weight"], 5);
        assert_eq!(server["effective_weight"], 5.0);
        assert_eq!(server["admin_change"]["by"], "[::1]:1");
        assert_eq!(server["admin_change"]["what"], "state maint");
        pool.set_admin_state("127.0.0.1:9", crate::pool::AdminState::Drain, "x")
            .expect("state");
        assert_eq!(
            pool.status("round_robin", None).servers[0].state,
            "draining"
        );
    }

    #[test]
    fn renders_inference_signals() {
        let pool = UpstreamPool::new("gpu");
        pool.set_configured(&[Server::new(([127, 0, 0, 1], 9).into(), 1)], false, None);
        let member = pool.members()[0].clone();
        member
            .state
            .signals
            .set_models(vec!["a\"b".into(), "c".into()], Instant::now());
        let load = Load {
            waiting: 3.0,
            running: 1.5,
            kv_usage: Some(0.25),
            prefix_hit_tokens: None,
            prefix_query_tokens: None,
            cache_tokens: None,
        };
        member.state.signals.set_load(load, Instant::now());
        let json = to_json(1, &[pool.status("least_inflight", None)]);
        assert!(
            json.contains("\"models\":[\"a\\\"b\",\"c\"],\"kv_events\":null,\"waiting\":3,\"running\":1.5,\"kv_usage\":0.25,\"signal_age_ms\":"),
            "{json}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let server = &parsed["upstreams"][0]["servers"][0];
        assert_eq!(server["models"][0], "a\"b");
        assert!(server["signal_age_ms"].as_u64().is_some());
        assert_eq!(server["recent_errors"], serde_json::json!([]));
    }
}
