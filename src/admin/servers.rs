//! The runtime API on the admin listener: `GET /servers` (every upstream's servers with their
//! configured and runtime weight, admin state, health, in-flight and sticky entries),
//! `POST /servers/UPSTREAM/ADDRESS/state` (body `ready|drain|maint`, HAProxy's `set server …
//! state`) and `POST /servers/UPSTREAM/ADDRESS/weight` (body `0`…`1000`, HAProxy's `set server …
//! weight`). Changes go to the upstream's long-lived pool, are logged with the client's address,
//! and answer the server's new view. Path and body handling are pure over a snapshot.

use serde::Serialize;

use crate::pool::{AdminError, AdminState, UpstreamPool, MAX_RUNTIME_WEIGHT};
use crate::runtime::Snapshot;

/// Where the runtime API lives.
pub const SERVERS_PATH: &str = "/servers";

/// Largest request body the runtime API reads (a state word or a number).
pub const MAX_BODY: usize = 64;

/// What a `POST /servers/U/A/…` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    State,
    Weight,
}

/// A runtime API request, from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServersRequest {
    /// `/servers`
    List,
    /// `/servers/UPSTREAM/ADDRESS/state|weight`
    Set {
        upstream: String,
        address: String,
        setting: Setting,
    },
}

impl ServersRequest {
    /// The request a path names, `None` for paths outside the runtime API. Segments are
    /// percent-decoded (`%5B%3A%3A1%5D%3A80` is `[::1]:80`).
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix(SERVERS_PATH)?;
        if rest.is_empty() || rest == "/" {
            return Some(Self::List);
        }
        let mut segments = rest.strip_prefix('/')?.split('/');
        let (Some(upstream), Some(address), Some(setting), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return None;
        };
        let setting = match setting {
            "state" => Setting::State,
            "weight" => Setting::Weight,
            _ => return None,
        };
        let (upstream, address) = (percent_decode(upstream)?, percent_decode(address)?);
        if upstream.is_empty() || address.is_empty() {
            return None;
        }
        Some(Self::Set {
            upstream,
            address,
            setting,
        })
    }
}

/// `%XX` sequences decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One server as the runtime API shows it.
#[derive(Debug, Serialize)]
pub struct ServerView {
    pub upstream: String,
    pub address: String,
    /// The weight in the file.
    pub weight: u32,
    /// The weight set at run time; `null` when none is.
    pub runtime_weight: Option<u32>,
    /// `ready`, `drain` or `maint`.
    pub admin_state: &'static str,
    /// `drain: true` in the file.
    pub drain_configured: bool,
    /// `up`, `down` or `ejected`.
    pub health: &'static str,
    pub inflight: u32,
    /// Clients pinned to the server in client_ip/header tables.
    pub sticky_entries: usize,
    pub discovered: bool,
    /// The last change at run time: `{ at_unix_ms, by, what }`.
    pub changed: Option<ChangeView>,
}

/// The last runtime change of a server.
#[derive(Debug, Serialize)]
pub struct ChangeView {
    pub at_unix_ms: u64,
    pub by: String,
    pub what: String,
}

/// One upstream's servers.
#[derive(Debug, Serialize)]
pub struct UpstreamView {
    pub name: String,
    pub servers: Vec<ServerView>,
}

/// `GET /servers`.
#[derive(Debug, Serialize)]
pub struct ServersDoc {
    pub generation: u64,
    pub upstreams: Vec<UpstreamView>,
}

fn server_views(pool: &UpstreamPool) -> Vec<ServerView> {
    let status = pool.status("", None);
    let members = pool.members();
    status
        .servers
        .into_iter()
        .zip(members.iter())
        .map(|(s, m)| ServerView {
            upstream: pool.name.to_string(),
            address: s.address,
            weight: s.weight,
            runtime_weight: s.runtime_weight,
            admin_state: s.admin_state,
            drain_configured: m.drain,
            health: s.health,
            inflight: s.inflight,
            sticky_entries: s.sticky_entries,
            discovered: s.discovered,
            changed: s.admin_change.map(|c| ChangeView {
                at_unix_ms: c.at_unix_ms,
                by: c.by,
                what: c.what,
            }),
        })
        .collect()
}

/// Every upstream's servers in `snapshot`, as JSON text.
pub fn list(snapshot: &Snapshot) -> String {
    let doc = ServersDoc {
        generation: snapshot.generation,
        upstreams: snapshot
            .upstreams()
            .iter()
            .map(|u| UpstreamView {
                name: u.name.to_string(),
                servers: server_views(&u.pool),
            })
            .collect(),
    };
    to_json(&doc)
}

fn to_json(value: &impl Serialize) -> String {
    let mut text =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

/// The answer to a runtime change: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// Applies `body` to `setting` of the server at `address` of `upstream` on behalf of `by` (the
/// client's address): 200 with the server's new view, 404 for an unknown upstream or server,
/// 400 for a bad body. Each change is logged.
pub fn apply(
    snapshot: &Snapshot,
    upstream: &str,
    address: &str,
    setting: Setting,
    body: &[u8],
    by: &str,
) -> Answer {
    let Some(runtime) = snapshot.upstreams().iter().find(|u| &*u.name == upstream) else {
        return Answer::text(404, format!("no upstream {upstream}\n"));
    };
    let pool = &runtime.pool;
    let body = String::from_utf8_lossy(body);
    let result = match setting {
        Setting::State => {
            let Some(state) = AdminState::parse(&body) else {
                return Answer::text(
                    400,
                    format!(
                        "the body must be ready, drain or maint, not {:?}\n",
                        body.trim()
                    ),
                );
            };
            pool.set_admin_state(address, state, by).inspect(|member| {
                tracing::info!(
                    by,
                    upstream,
                    server = %member.address,
                    state = state.as_str(),
                    "runtime change: server admin state"
                );
            })
        }
        Setting::Weight => {
            let Some(weight) = body
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|w| *w <= MAX_RUNTIME_WEIGHT)
            else {
                return Answer::text(
                    400,
                    format!(
                        "the body must be a weight from 0 to {MAX_RUNTIME_WEIGHT}, not {:?}\n",
                        body.trim()
                    ),
                );
            };
            pool.set_runtime_weight(address, weight, by)
                .inspect(|member| {
                    tracing::info!(
                        by,
                        upstream,
                        server = %member.address,
                        weight,
                        configured_weight = member.weight,
                        "runtime change: server weight"
                    );
                })
        }
    };
    match result {
        Ok(member) => {
            let view = server_views(pool)
                .into_iter()
                .find(|v| v.address == *member.address);
            match view {
                Some(view) => Answer {
                    status: 200,
                    content_type: "application/json",
                    body: to_json(&view),
                },
                None => Answer::text(
                    404,
                    format!("upstream {upstream} has no server {address}\n"),
                ),
            }
        }
        Err(error @ AdminError::UnknownServer { .. }) => Answer::text(404, format!("{error}\n")),
        Err(error @ AdminError::WeightOutOfRange(_)) => Answer::text(400, format!("{error}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_world::{config, listener, route};
    use crate::runtime::Live;

    #[test]
    fn paths_name_the_list_or_one_setting() {
        assert_eq!(
            ServersRequest::parse("/servers"),
            Some(ServersRequest::List)
        );
        assert_eq!(
            ServersRequest::parse("/servers/"),
            Some(ServersRequest::List)
        );
        assert_eq!(
            ServersRequest::parse("/servers/owui/10.0.0.1:8080/state"),
            Some(ServersRequest::Set {
                upstream: "owui".into(),
                address: "10.0.0.1:8080".into(),
                setting: Setting::State
            })
        );
        assert_eq!(
            ServersRequest::parse("/servers/gpu/%5B%3A%3A1%5D%3A8000/weight"),
            Some(ServersRequest::Set {
                upstream: "gpu".into(),
                address: "[::1]:8000".into(),
                setting: Setting::Weight
            })
        );
        for outside in [
            "/serversx",
            "/servers/owui",
            "/servers/owui/a:1",
            "/servers/owui/a:1/colour",
            "/servers/owui/a:1/state/more",
            "/servers//a:1/state",
            "/servers/owui/%zz/state",
            "/status",
        ] {
            assert_eq!(ServersRequest::parse(outside), None, "{outside}");
        }
    }

    #[test]
    fn changes_reach_the_pool_and_bad_requests_are_refused() {
        let cfg = config(
            vec![listener("https", 443, true, false)],
            vec![route("a", None, "u")],
        );
        let live = Live::new().expect("live state");
        let snapshot = Snapshot::compile(&cfg, 1, &live, None);
        let servers = &cfg.upstreams["u"].servers;
        snapshot.upstreams()[0]
            .pool
            .set_configured(servers, false, None);
        let address = snapshot.upstreams()[0].pool.members()[0]
            .address
            .to_string();

        let answer = apply(
            &snapshot,
            "u",
            &address,
            Setting::State,
            b"drain\n",
            "127.0.0.1:9",
        );
        assert_eq!(answer.status, 200, "{answer:?}");
        let view: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
        assert_eq!(view["admin_state"], "drain");
        assert_eq!(view["changed"]["by"], "127.0.0.1:9");
        let answer = apply(
            &snapshot,
            "u",
            &address,
            Setting::Weight,
            b"7",
            "127.0.0.1:9",
        );
        assert_eq!(answer.status, 200, "{answer:?}");

        let listed: serde_json::Value = serde_json::from_str(&list(&snapshot)).expect("json");
        let server = &listed["upstreams"][0]["servers"][0];
        assert_eq!(server["address"], address.as_str());
        assert_eq!(server["runtime_weight"], 7);
        assert_eq!(server["weight"], 1);
        assert_eq!(server["admin_state"], "drain");
        assert_eq!(server["health"], "up");
        assert_eq!(server["changed"]["what"], "weight 7");

        let status = |upstream: &str, address: &str, setting, body: &[u8]| {
            apply(&snapshot, upstream, address, setting, body, "x").status
        };
        assert_eq!(status("nope", &address, Setting::State, b"ready"), 404);
        assert_eq!(status("u", "127.0.0.1:3", Setting::State, b"ready"), 404);
        assert_eq!(status("u", &address, Setting::State, b"disabled"), 400);
        assert_eq!(status("u", &address, Setting::Weight, b"1001"), 400);
        assert_eq!(status("u", &address, Setting::Weight, b"-1"), 400);
        assert_eq!(status("u", &address, Setting::Weight, b"two"), 400);
        assert_eq!(status("u", &address, Setting::State, b"maint"), 200);
    }
}
