//! The admin listener: `/healthz` (alive), `/readyz` (a configuration is loaded and the listeners
//! are bound), `/metrics` (Prometheus text), `/status` (HTML), `/status.json`,
//! `/status/upstreams.json` (the balancer's own view of every server), `POST /reload` and the
//! runtime API (`/servers`: admin state and weight of each server, see [`servers`]).
//! Loopback by default; a non-loopback address needs `admin.allow`, and every request is checked
//! against it.

pub mod ctl;
pub mod probe;
pub mod servers;
pub mod status;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::config::model::Cidr;
use crate::lifecycle::Readiness;
use crate::observe::clock;
use crate::pool::status::to_json;
use crate::reload::{Reloader, Trigger};
use crate::runtime::Live;
use servers::ServersRequest;

/// Content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The admin endpoints.
pub struct AdminApp {
    live: Arc<Live>,
    readiness: Arc<Readiness>,
    reloader: Arc<Reloader>,
    /// `None` = every peer that can connect (a loopback listener).
    allow: Option<Vec<Cidr>>,
}

impl AdminApp {
    pub fn new(live: Arc<Live>, readiness: Arc<Readiness>, reloader: Arc<Reloader>) -> Self {
        Self {
            live,
            readiness,
            reloader,
            allow: None,
        }
    }

    /// Only peers in these ranges get an answer other than 403.
    pub fn allow(mut self, allow: Option<Vec<Cidr>>) -> Self {
        self.allow = allow;
        self
    }

    fn allowed(&self, session: &ServerSession) -> bool {
        let Some(allow) = &self.allow else {
            return true;
        };
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        peer.is_some_and(|ip| allow.iter().any(|range| range.contains(ip)))
    }

    /// The runtime API: the list, or one change to one server.
    async fn servers(
        &self,
        session: &mut ServerSession,
        request: ServersRequest,
        read: bool,
    ) -> Response<Vec<u8>> {
        let post = session.req_header().method == Method::POST;
        match request {
            ServersRequest::List if read => reply(
                200,
                "application/json",
                servers::list(&self.live.snapshots.load()),
            ),
            ServersRequest::List => text(405, "Method Not Allowed: use GET /servers\n".into()),
            ServersRequest::Set { .. } if !post => text(
                405,
                "Method Not Allowed: use POST with the new value as the body\n".into(),
            ),
            ServersRequest::Set {
                upstream,
                address,
                setting,
            } => {
                let body = match read_body(session, servers::MAX_BODY).await {
                    Ok(body) => body,
                    Err(answer) => return answer,
                };
                let by = session
                    .client_addr()
                    .map_or_else(|| "unknown".to_string(), |a| a.to_string());
                let snapshot = self.live.snapshots.load();
                let answer = servers::apply(&snapshot, &upstream, &address, setting, &body, &by);
                reply(answer.status, answer.content_type, answer.body)
            }
        }
    }
}

/// The request body, at most `limit` bytes (413 beyond, 400 when it cannot be read).
async fn read_body(
    session: &mut ServerSession,
    limit: usize,
) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > limit {
                    return Err(text(
                        413,
                        format!("the body may hold at most {limit} bytes\n"),
                    ));
                }
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err(text(400, format!("cannot read the body: {error}\n"))),
        }
    }
}

fn reply(status: u16, content_type: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

fn text(status: u16, body: String) -> Response<Vec<u8>> {
    reply(status, "text/plain; charset=utf-8", body)
}

/// `/status` and `/status.json`: the board joined with the proxy's counters and the balancer's
/// state of every server, the recent history and the GPU-pool panel.
fn status_page(live: &Live, as_html: bool) -> Response<Vec<u8>> {
    let observe = &live.observe;
    let board = observe.board.snapshot();
    let totals = status::Totals {
        open_connections: observe.traffic.open_connections_total(),
        open_websockets: observe.traffic.open_websockets_total(),
    };
    let snapshot = live.snapshots.load();
    let pools: Vec<_> = snapshot.upstreams().iter().map(|u| u.status()).collect();
    let view = |upstream: &str, address: &str| observe.servers.view(upstream, address);
    let mut doc = status::shape(&board, view, &pools, totals, clock::unix_millis());
    doc.cluster = snapshot
        .cluster
        .as_ref()
        .map(|cluster| (*cluster.view()).clone());
    doc.history = observe.history.view();
    let engines: Vec<(&str, &'static str)> = snapshot
        .upstreams()
        .iter()
        .filter_map(|u| Some((&*u.name, u.inference.as_ref()?.engine.name())))
        .collect();
    doc.gpu_pools = status::gpu::shape(&pools, &engines, doc.history.as_ref());
    if as_html {
        reply(200, "text/html; charset=utf-8", status::html(&doc))
    } else {
        reply(200, "application/json", status::json(&doc))
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if !self.allowed(session) {
            return text(
                403,
                "Forbidden: this address is not in admin.allow\n".into(),
            );
        }
        let method = session.req_header().method.clone();
        let read = matches!(method, Method::GET | Method::HEAD);
        if let Some(request) = ServersRequest::parse(session.req_header().uri.path()) {
            return self.servers(session, request, read).await;
        }
        match (method.as_str(), session.req_header().uri.path()) {
            (_, "/healthz") => text(200, "ok\n".into()),
            (_, "/readyz") => {
                let generation = self.live.generation();
                if self.readiness.is_ready() {
                    text(200, format!("ready generation={generation}\n"))
                } else {
                    text(503, "starting: listeners not bound yet\n".into())
                }
            }
            (_, "/metrics") if read => reply(
                200,
                PROMETHEUS_CONTENT_TYPE,
                self.live.observe.metrics.render(),
            ),
            (_, "/status" | "/status/") if read => status_page(&self.live, true),
            (_, "/status.json") if read => status_page(&self.live, false),
            (_, "/status/upstreams.json") if read => {
                let snapshot = self.live.snapshots.load();
                let upstreams: Vec<_> = snapshot.upstreams().iter().map(|u| u.status()).collect();
                reply(
                    200,
                    "application/json",
                    to_json(snapshot.generation, &upstreams),
                )
            }
            (
                _,
                "/metrics" | "/status" | "/status/" | "/status.json" | "/status/upstreams.json",
            ) => text(405, "Method Not Allowed: use GET\n".into()),
            ("POST", "/reload") => match self.reloader.reload(Trigger::Admin).await {
                Ok(generation) => text(200, format!("reloaded generation={generation}\n")),
                Err(errors) => {
                    let mut body = format!(
                        "configuration refused ({} errors); still serving generation {}\n",
                        errors.len(),
                        self.live.generation()
                    );
                    for error in errors {
                        body.push_str(&error);
                        body.push('\n');
                    }
                    text(422, body)
                }
            },
            (_, "/reload") => text(405, "use POST /reload\n".into()),
            _ => text(404, "Not Found\n".into()),
        }
    }
}
