//! The status document behind `/status.json` and `/status`: the board (configuration, reloads,
//! certificates) joined with each server's live counters. Shaping is a pure function of its inputs
//! so it is tested without a daemon; fields that later work fills (active health, sticky sessions,
//! certificate renewal) are present now as `null`. The recent history of every route, upstream
//! and inference node (`history`) and the GPU-pool panel ([`gpu`]) are filled in by the caller.

pub mod gpu;
pub mod pretty;

use serde::Serialize;

use crate::observe::board::{Board, CertificateInfo, ListenerInfo, ReloadInfo, RouteInfo};
use crate::observe::history::HistoryView;
use crate::observe::servers::{PassiveState, RecentError, ServerView};
use crate::pool;

/// The status page's HTML; `/*STATUS*/null` is replaced with the document at serve time.
const PAGE: &str = include_str!("status_page.html");
const PAGE_SLOT: &str = "/*STATUS*/null";

/// Live totals that do not come from the board.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub open_connections: i64,
    pub open_websockets: i64,
}

/// `/status.json`.
#[derive(Debug, Serialize)]
pub struct StatusDoc<'a> {
    pub version: &'static str,
    pub now_ms: i64,
    pub generation: u64,
    pub loaded_at_ms: i64,
    pub config_file: &'a str,
    pub connections: Totals,
    pub reload: &'a ReloadInfo,
    pub listeners: &'a [ListenerInfo],
    pub routes: &'a [RouteInfo],
    pub upstreams: Vec<UpstreamStatus<'a>>,
    pub certificates: Vec<CertificateStatus<'a>>,
    /// Members, lock holders and Redis as this instance sees them; `null` without `cluster:`.
    pub cluster: Option<crate::cluster::ClusterView>,
    /// The last window of every route's, upstream's and inference node's series; `null`
    /// without history (no admin listener).
    pub history: Option<HistoryView>,
    /// Per inference upstream: models → nodes, node signals, decisions by reason.
    pub gpu_pools: Vec<gpu::GpuPool>,
}

/// One upstream and its servers.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus<'a> {
    pub name: &'a str,
    pub balance: &'a str,
    /// Sticky session settings; `null` until sticky sessions exist.
    pub sticky: Option<()>,
    pub servers: Vec<ServerStatus<'a>>,
    /// `cache_aware`: the busiest prompt prefixes (tenants) and the servers carrying each, home
    /// first; empty for other policies.
    pub prefixes: Vec<PrefixStatus>,
}

/// One prompt prefix and its spread over servers.
#[derive(Debug, Serialize)]
pub struct PrefixStatus {
    pub key: String,
    /// How many servers carry it now.
    pub spread: usize,
    pub holders: Vec<PrefixHolder>,
}

/// A server carrying a prefix and its requests of it in the window.
#[derive(Debug, Serialize)]
pub struct PrefixHolder {
    pub server: String,
    pub requests: u64,
}

/// One server: configuration, state and live counters.
#[derive(Debug, Serialize)]
pub struct ServerStatus<'a> {
    pub address: &'a str,
    /// The configured weight.
    pub weight: u32,
    /// The weight set through the admin API (`ferrogate ctl weight`), if any.
    pub runtime_weight: Option<u32>,
    /// `ready`, `drain` or `maint`: what the admin API set.
    pub admin_state: &'static str,
    /// The last change through the admin API: when, by whom, what.
    pub admin_change: Option<AdminChangeInfo>,
    /// `up`, `down`, `draining`, `maint` or `unknown`.
    pub state: &'static str,
    /// What decided `state`: `health` (the balancer took the server out: failed active checks or
    /// passive ejection; or it is draining), `admin` (drain or maint through the admin API) or
    /// `passive` (the connection attempts the proxy saw).
    pub state_source: &'static str,
    /// The balancer's view; `null` for a server it does not know (yet).
    pub health: Option<HealthDetail>,
    pub in_flight: i64,
    /// Requests assigned to the server so far (retries included).
    pub attempts: u64,
    pub connect_errors: u64,
    pub failures_in_row: u64,
    pub last_success_ms: Option<i64>,
    /// Clients pinned to this server in client_ip/header tables; `null` when unknown.
    pub sticky_sessions: Option<u64>,
    pub recent_errors: Vec<RecentError>,
    /// The state of its KV-cache event stream (`exact`, or why the approximate index decides
    /// for it); `null` for a server that publishes none.
    pub kv_events: Option<&'static str>,
}

/// A change made through the admin API.
#[derive(Debug, Serialize)]
pub struct AdminChangeInfo {
    pub at_ms: u64,
    /// The admin client's address.
    pub by: String,
    /// `state drain`, `weight 5`, …
    pub what: String,
}

/// What the balancer knows of a server.
#[derive(Debug, Serialize)]
pub struct HealthDetail {
    /// `up`, `down` (active checks), `ejected` (passive) or `draining`.
    pub state: &'static str,
    pub checks: u64,
    pub failures: u64,
    /// The weight in force (lower during slow start).
    pub effective_weight: f64,
    pub sticky_hits: u64,
    pub discovered: bool,
}

/// A certificate with its remaining lifetime.
#[derive(Debug, Serialize)]
pub struct CertificateStatus<'a> {
    #[serde(flatten)]
    pub info: &'a CertificateInfo,
    pub expires_in_seconds: i64,
}

/// The state shown for a server: the balancer's decision first (a server it took out is down,
/// whatever the last attempt did), then what the proxy saw of its connections.
fn joined_state(
    passive: PassiveState,
    pooled: Option<&pool::ServerStatus>,
) -> (&'static str, &'static str) {
    if let Some(p) = pooled.filter(|p| p.admin_state != "ready") {
        if p.state == "maint" {
            return ("maint", "admin");
        }
        if p.state == "draining" {
            return ("draining", "admin");
        }
    }
    match pooled.map(|p| p.state) {
        Some("down" | "ejected") => ("down", "health"),
        Some("draining") => ("draining", "health"),
        _ => match passive {
            PassiveState::Up => ("up", "passive"),
            PassiveState::Down => ("down", "passive"),
            PassiveState::Unknown if pooled.is_some_and(|p| p.checks > 0) => ("up", "health"),
            PassiveState::Unknown => ("unknown", "passive"),
        },
    }
}

/// Joins the board with server views (`views(upstream, address)`) and the balancer's pools at
/// `now_ms`.
pub fn shape<'a>(
    board: &'a Board,
    views: impl Fn(&str, &str) -> Option<ServerView>,
    pools: &[pool::UpstreamStatus],
    totals: Totals,
    now_ms: i64,
) -> StatusDoc<'a> {
    let pooled = |upstream: &str, address: &str| {
        pools
            .iter()
            .find(|p| p.name == upstream)
            .and_then(|p| p.servers.iter().find(|s| s.address == address))
    };
    let upstreams = board
        .upstreams
        .iter()
        .map(|u| UpstreamStatus {
            name: &u.name,
            balance: &u.balance,
            sticky: None,
            prefixes: pools
                .iter()
                .find(|p| p.name == u.name)
                .map(|p| {
                    p.prefixes
                        .iter()
                        .map(|prefix| PrefixStatus {
                            key: prefix.key.clone(),
                            spread: prefix.holders.len(),
                            holders: prefix
                                .holders
                                .iter()
                                .map(|(server, requests)| PrefixHolder {
                                    server: server.clone(),
                                    requests: *requests,
                                })
                                .collect(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            servers: u
                .servers
                .iter()
                .map(|s| {
                    let view = views(&u.name, &s.address).unwrap_or(ServerView {
                        state: PassiveState::Unknown,
                        in_flight: 0,
                        attempts: 0,
                        connect_errors: 0,
                        failures_in_row: 0,
                        last_success_ms: None,
                        recent_errors: Vec::new(),
                    });
                    let pool = pooled(&u.name, &s.address);
                    let (state, state_source) = joined_state(view.state, pool);
                    ServerStatus {
                        address: &s.address,
                        weight: s.weight,
                        runtime_weight: pool.and_then(|p| p.runtime_weight),
                        admin_state: pool.map_or("ready", |p| p.admin_state),
                        admin_change: pool.and_then(|p| p.admin_change.as_ref()).map(|c| {
                            AdminChangeInfo {
                                at_ms: c.at_unix_ms,
                                by: c.by.clone(),
                                what: c.what.clone(),
                            }
                        }),
                        state,
                        state_source,
                        health: pool.map(|p| HealthDetail {
                            state: p.state,
                            checks: p.checks,
                            failures: p.failures,
                            effective_weight: p.effective_weight,
                            sticky_hits: p.sticky_hits,
                            discovered: p.discovered,
                        }),
                        in_flight: pool.map_or(view.in_flight, |p| i64::from(p.inflight)),
                        attempts: view.attempts,
                        connect_errors: view.connect_errors,
                        failures_in_row: view.failures_in_row,
                        last_success_ms: view.last_success_ms,
                        sticky_sessions: pool.map(|p| p.sticky_entries as u64),
                        recent_errors: view.recent_errors,
                        kv_events: pool.and_then(|p| p.kv_events),
                    }
                })
                .collect(),
        })
        .collect();
    let certificates = board
        .certificates
        .values()
        .map(|c| CertificateStatus {
            info: c,
            expires_in_seconds: c.not_after.saturating_sub(now_ms / 1000),
        })
        .collect();
    StatusDoc {
        version: env!("CARGO_PKG_VERSION"),
        now_ms,
        generation: board.generation,
        loaded_at_ms: board.loaded_at_ms,
        config_file: &board.source,
        connections: totals,
        reload: &board.reload,
        listeners: &board.listeners,
        routes: &board.routes,
        upstreams,
        certificates,
        cluster: None,
        history: None,
        gpu_pools: Vec::new(),
    }
}

/// The document as JSON text (pretty, with arrays of numbers on one line).
pub fn json(doc: &StatusDoc<'_>) -> String {
    serde_json::to_string_pretty(doc)
        .map(|text| pretty::inline_number_arrays(&text))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The HTML page with the document embedded (so it renders at once, without a second request);
/// the page's script refreshes it from `/status.json`.
pub fn html(doc: &StatusDoc<'_>) -> String {
    let data = serde_json::to_string(doc)
        .unwrap_or_else(|_| "null".into())
        // Inside <script>, `</script>` or `<!--` in a string would end the element.
        .replace('<', "\\u003c");
    PAGE.replacen(PAGE_SLOT, &data, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::board::{ServerInfo, UpstreamInfo};

    fn board() -> Board {
        let mut board = Board {
            generation: 4,
            source: "/etc/ferrogate/ferrogate.yaml".into(),
            upstreams: vec![UpstreamInfo {
                name: "owui".into(),
                balance: "round_robin".into(),
                servers: vec![
                    ServerInfo {
                        address: "10.0.0.1:80".into(),
                        weight: 2,
                    },
                    ServerInfo {
                        address: "10.0.0.2:80".into(),
                        weight: 1,
                    },
                ],
            }],
            ..Board::default()
        };
        board.certificates.insert(
            "chat".into(),
            CertificateInfo {
                name: "chat".into(),
                domains: vec!["chat.test".into()],
                not_after: 1_000 + 86_400,
                source: "file".into(),
                renewal: None,
                last_error: None,
            },
        );
        board
    }

    #[test]
    fn joins_servers_with_their_views_and_leaves_future_fields_null() {
        let board = board();
        let doc = shape(
            &board,
            |upstream, address| {
                (upstream == "owui" && address == "10.0.0.2:80").then(|| ServerView {
                    state: PassiveState::Down,
                    in_flight: 3,
                    attempts: 9,
                    connect_errors: 7,
                    failures_in_row: 2,
                    last_success_ms: None,
                    recent_errors: vec![RecentError {
                        at_ms: 5,
                        kind: "ConnectRefused".into(),
                        route: "chat".into(),
                    }],
                })
            },
            &[],
            Totals::default(),
            1_000_000,
        );
        let value: serde_json::Value = serde_json::from_str(&json(&doc)).unwrap();
        let servers = &value["upstreams"][0]["servers"];
        assert_eq!(servers[0]["state"], "unknown");
        assert_eq!(servers[0]["weight"], 2);
        assert_eq!(servers[1]["state"], "down");
        assert_eq!(servers[1]["state_source"], "passive");
        assert_eq!(servers[1]["in_flight"], 3);
        assert_eq!(servers[1]["recent_errors"][0]["kind"], "ConnectRefused");
        assert!(servers[1]["health"].is_null());
        assert!(servers[1]["sticky_sessions"].is_null());
        assert!(value["upstreams"][0]["sticky"].is_null());
        assert_eq!(value["generation"], 4);
        let cert = &value["certificates"][0];
        assert_eq!(cert["name"], "chat");
        assert_eq!(cert["expires_in_seconds"], 86_400);
        assert!(cert["renewal"].is_null());
    }

    fn pooled(address: &str, state: &'static str, checks: u64) -> pool::ServerStatus {
        pool::ServerStatus {
            id: "0123456789abcdef".into(),
            address: address.into(),
            state,
            health: "up",
            admin_state: "ready",
            runtime_weight: None,
            admin_change: None,
            inflight: 4,
            max_inflight: None,
            weight: 1,
            effective_weight: 0.5,
            requests: 10,
            failures: 3,
            checks,
            sticky_hits: 7,
            sticky_entries: 2,
            discovered: false,
            recent_errors: Vec::new(),
            models: None,
            load: None,
            kv_events: Some("fallback_silent"),
        }
    }

    #[test]
    fn the_balancers_decision_comes_before_the_last_attempt() {
        let board = board();
        let pools = vec![pool::UpstreamStatus {
            name: "owui".into(),
            balance: "round_robin",
            queued: 0,
            servers: vec![
                pooled("10.0.0.1:80", "ejected", 0),
                pooled("10.0.0.2:80", "up", 5),
            ],
            prefixes: vec![pool::PrefixStatus {
                key: "00000000000000ff".into(),
                holders: vec![("10.0.0.2:80".into(), 9)],
            }],
        }];
        let up = |_: &str, _: &str| {
            Some(ServerView {
                state: PassiveState::Up,
                in_flight: 0,
                attempts: 1,
                connect_errors: 0,
                failures_in_row: 0,
                last_success_ms: Some(1),
                recent_errors: Vec::new(),
            })
        };
        let doc = shape(&board, up, &pools, Totals::default(), 0);
        let value: serde_json::Value = serde_json::from_str(&json(&doc)).unwrap();
        let prefix = &value["upstreams"][0]["prefixes"][0];
        assert_eq!(prefix["spread"], 1);
        assert_eq!(prefix["holders"][0]["server"], "10.0.0.2:80");
        assert_eq!(prefix["holders"][0]["requests"], 9);
        let servers = &value["upstreams"][0]["servers"];
        assert_eq!(servers[0]["state"], "down");
        assert_eq!(servers[0]["state_source"], "health");
        assert_eq!(servers[0]["health"]["state"], "ejected");
        assert_eq!(servers[1]["state"], "up");
        assert_eq!(
            servers[1]["in_flight"], 4,
            "the balancer's count is the one shown"
        );
        assert_eq!(servers[1]["sticky_sessions"], 2);
        assert_eq!(servers[1]["health"]["checks"], 5);
        assert_eq!(
            joined_state(PassiveState::Unknown, Some(&pooled("x", "draining", 0))),
            ("draining", "health")
        );
        assert_eq!(
            joined_state(PassiveState::Unknown, None),
            ("unknown", "passive")
        );
        let mut maint = pooled("x", "maint", 0);
        maint.admin_state = "maint";
        assert_eq!(
            joined_state(PassiveState::Up, Some(&maint)),
            ("maint", "admin")
        );
        let mut drained = pooled("x", "draining", 0);
        drained.admin_state = "drain";
        assert_eq!(
            joined_state(PassiveState::Up, Some(&drained)),
            ("draining", "admin")
        );
        // Down and drained through the API: down is what matters.
        drained.state = "down";
        assert_eq!(
            joined_state(PassiveState::Up, Some(&drained)),
            ("down", "health")
        );
    }

    #[test]
    fn the_history_and_the_gpu_panel_are_sections_of_their_own() {
        use crate::observe::history::{History, Points};
        use std::time::{Duration, Instant};

        let board = board();
        let mut doc = shape(&board, |_, _| None, &[], Totals::default(), 0);
        let value: serde_json::Value = serde_json::from_str(&json(&doc)).unwrap();
        assert!(value["history"].is_null(), "no history without a sampler");
        assert_eq!(value["gpu_pools"], serde_json::json!([]));

        let history = History::default();
        history.configure(Some(Duration::from_secs(5)));
        let points = Points {
            routes: vec![("chat".into(), [Some(1.5), Some(0.0), Some(0.02), Some(0.2)])],
            ..Points::default()
        };
        let t0 = Instant::now();
        history.record(t0, 10_000, &points);
        history.record(t0 + Duration::from_secs(5), 15_000, &Points::default());
        doc.history = history.view();
        let value: serde_json::Value = serde_json::from_str(&json(&doc)).unwrap();
        let h = &value["history"];
        assert_eq!(h["step_ms"], 5_000);
        assert_eq!(h["start_ms"], 10_000);
        assert_eq!(h["points"], 2);
        assert_eq!(h["window_points"], 180);
        assert_eq!(
            h["routes"]["chat"]["requests_per_s"],
            serde_json::json!([1.5, null])
        );
        assert_eq!(h["routes"]["chat"]["latency_p99_s"][0], 0.2);
        assert!(h["upstreams"].as_object().is_some_and(|u| u.is_empty()));
        // The rest of the document is as before.
        assert_eq!(value["upstreams"][0]["name"], "owui");
        let page = html(&doc);
        assert!(page.contains("\"requests_per_s\":[1.5,null]"));
    }

    #[test]
    fn html_embeds_the_document_safely() {
        let mut board = board();
        board.reload.last_errors = vec!["</script><script>alert(1)</script>".into()];
        let doc = shape(&board, |_, _| None, &[], Totals::default(), 0);
        let page = html(&doc);
        assert!(!page.contains(PAGE_SLOT));
        assert!(!page.contains("</script><script>alert"));
        assert!(page.contains("\\u003c/script>"));
        assert!(page.contains("10.0.0.1:80"));
    }
}
