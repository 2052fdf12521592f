//! The admin listener: `/healthz` (alive), `/readyz` (a configuration is loaded and the
//! listeners are bound) and `/status.json` (every upstream server's state, in-flight, sticky
//! count, recent errors). Loopback by default; metrics and the status page grow here.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::pool::status::to_json;
use crate::runtime::SnapshotStore;

/// The admin endpoints.
pub struct AdminApp {
    snapshots: Arc<SnapshotStore>,
}

impl AdminApp {
    pub fn new(snapshots: Arc<SnapshotStore>) -> Self {
        Self { snapshots }
    }
}

fn text(status: u16, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => text(200, "ok\n".into()),
            "/readyz" => {
                let generation = self.snapshots.load().generation;
                text(200, format!("ready generation={generation}\n"))
            }
            "/status.json" => {
                let snapshot = self.snapshots.load();
                let upstreams: Vec<_> = snapshot.upstreams().iter().map(|u| u.status()).collect();
                let mut response = text(200, to_json(snapshot.generation, &upstreams));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => text(404, "Not Found\n".into()),
        }
    }
}
