//! The status document behind `/status.json` and `/status`: the board (configuration, reloads,
//! certificates) joined with each server's live counters. Shaping is a pure function of its inputs
//! so it is tested without a daemon; fields that later work fills (active health, sticky sessions,
//! certificate renewal) are present now as `null`.

use serde::Serialize;

use crate::observe::board::{Board, CertificateInfo, ListenerInfo, ReloadInfo, RouteInfo};
use crate::observe::servers::{PassiveState, RecentError, ServerView};

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
}

/// One upstream and its servers.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus<'a> {
    pub name: &'a str,
    pub balance: &'a str,
    /// Sticky session settings; `null` until sticky sessions exist.
    pub sticky: Option<()>,
    pub servers: Vec<ServerStatus<'a>>,
}

/// One server: configuration, state and live counters.
#[derive(Debug, Serialize)]
pub struct ServerStatus<'a> {
    pub address: &'a str,
    pub weight: u32,
    /// `up`, `down` or `unknown`.
    pub state: PassiveState,
    /// What decided `state`: `passive` (connection attempts seen by the proxy) for now; active
    /// health checks will report `health`.
    pub state_source: &'static str,
    /// Active health check details; `null` until health checks exist.
    pub health: Option<()>,
    pub in_flight: i64,
    /// Requests assigned to the server so far (retries included).
    pub attempts: u64,
    pub connect_errors: u64,
    pub failures_in_row: u64,
    pub last_success_ms: Option<i64>,
    /// Clients pinned to this server; `null` until sticky sessions exist.
    pub sticky_sessions: Option<u64>,
    pub recent_errors: Vec<RecentError>,
}

/// A certificate with its remaining lifetime.
#[derive(Debug, Serialize)]
pub struct CertificateStatus<'a> {
    #[serde(flatten)]
    pub info: &'a CertificateInfo,
    pub expires_in_seconds: i64,
}

/// Joins the board with server views (`views(upstream, address)`) at `now_ms`.
pub fn shape<'a>(
    board: &'a Board,
    views: impl Fn(&str, &str) -> Option<ServerView>,
    totals: Totals,
    now_ms: i64,
) -> StatusDoc<'a> {
    let upstreams = board
        .upstreams
        .iter()
        .map(|u| UpstreamStatus {
            name: &u.name,
            balance: &u.balance,
            sticky: None,
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
                    ServerStatus {
                        address: &s.address,
                        weight: s.weight,
                        state: view.state,
                        state_source: "passive",
                        health: None,
                        in_flight: view.in_flight,
                        attempts: view.attempts,
                        connect_errors: view.connect_errors,
                        failures_in_row: view.failures_in_row,
                        last_success_ms: view.last_success_ms,
                        sticky_sessions: None,
                        recent_errors: view.recent_errors,
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
    }
}

/// The document as JSON text.
pub fn json(doc: &StatusDoc<'_>) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
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

    #[test]
    fn html_embeds_the_document_safely() {
        let mut board = board();
        board.reload.last_errors = vec!["</script><script>alert(1)</script>".into()];
        let doc = shape(&board, |_, _| None, Totals::default(), 0);
        let page = html(&doc);
        assert!(!page.contains(PAGE_SLOT));
        assert!(!page.contains("</script><script>alert"));
        assert!(page.contains("\\u003c/script>"));
        assert!(page.contains("10.0.0.1:80"));
    }
}
