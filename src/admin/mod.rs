//! The admin listener: `/healthz` (alive), `/readyz` (a configuration is loaded and the
//! listeners are bound) and `/status.json` (every upstream server's state, in-flight, sticky
//! count, recent errors). Loopback by default; metrics and the status page grow here.

pub mod probe;

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::lifecycle::Readiness;
use crate::pool::status::to_json;
use crate::reload::{Reloader, Trigger};
use crate::runtime::SnapshotStore;

/// The admin endpoints.
pub struct AdminApp {
    snapshots: Arc<SnapshotStore>,
    readiness: Arc<Readiness>,
    reloader: Arc<Reloader>,
}

impl AdminApp {
    pub fn new(
        snapshots: Arc<SnapshotStore>,
        readiness: Arc<Readiness>,
        reloader: Arc<Reloader>,
    ) -> Self {
        Self {
            snapshots,
            readiness,
            reloader,
        }
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
        let method = session.req_header().method.clone();
        match (method.as_str(), session.req_header().uri.path()) {
            (_, "/healthz") => text(200, "ok\n".into()),
            (_, "/readyz") => {
                let generation = self.snapshots.load().generation;
                if self.readiness.is_ready() {
                    text(200, format!("ready generation={generation}\n"))
                } else {
                    text(503, "starting: listeners not bound yet\n".into())
                }
            }
            (_, "/status.json") => {
                let snapshot = self.snapshots.load();
                let upstreams: Vec<_> = snapshot.upstreams().iter().map(|u| u.status()).collect();
                let mut response = text(200, to_json(snapshot.generation, &upstreams));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            ("POST", "/reload") => match self.reloader.reload(Trigger::Admin).await {
                Ok(generation) => text(200, format!("reloaded generation={generation}\n")),
                Err(errors) => {
                    let mut body = format!(
                        "configuration refused ({} errors); still serving generation {}\n",
                        errors.len(),
                        self.snapshots.load().generation
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
