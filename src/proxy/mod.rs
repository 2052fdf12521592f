//! The request path: ferrogate's own pingora-core application ([`ProxyApp`], one per listener).
//! A connection is served as HTTP/2 ([`h2`]) when TLS negotiated it, else as HTTP/1 ([`h1`]);
//! each request goes through [`exchange`] (route, edge checks, server choice with retries,
//! relay), and an upgraded HTTP/1 connection ends as a [`tunnel`]. pingora supplies the HTTP
//! sessions, the upstream connector and its pool; every decision is ours.

pub mod attempt;
pub mod balancing;
pub mod body;
pub mod decide;
pub mod error;
pub mod exchange;
pub mod forwarded;
pub mod framing;
pub mod h1;
pub mod h2;
pub mod idle_pool;
pub mod inference;
pub mod linger;
pub mod outbound;
pub mod peer;
pub mod relay;
pub mod reply;
pub mod respond;
pub mod timer;
pub mod tunnel;
pub mod upstreams;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use pingora::apps::ServerApp;
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::{Stream, ALPN};
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;

use crate::config::model::{Listener, ListenerLimits, LISTENER_HTTP};
use crate::lifecycle::ActiveRequests;
use crate::runtime::Live;
use crate::tls::client_auth::{verified_client_cert, ClientCertHeaders};
use forwarded::PeerText;
use upstreams::Upstreams;

/// How long an idle pooled upstream connection is kept.
pub const DEFAULT_UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(60);

/// The upstream connector every listener shares, with each worker thread's idle server connections.
pub fn connector(conf: &ServerConf) -> Arc<Upstreams> {
    Arc::new(Upstreams::new(conf))
}

/// The request path of one listener.
pub struct ProxyApp {
    listener: Arc<str>,
    tls: bool,
    /// The plain `http` listener, where ACME HTTP-01 challenges are answered.
    acme: bool,
    /// The listener asks for client certificates (`client_auth`, bound at start with its TLS
    /// acceptor): requests carry the X-Client-Cert-* headers of what the connection showed.
    client_auth: bool,
    /// X-Forwarded-Proto.
    proto: HeaderValue,
    live: Arc<Live>,
    active: Arc<ActiveRequests>,
    limits: ListenerLimits,
    h2_options: H2Options,
    connector: Arc<Upstreams>,
}

impl ProxyApp {
    /// The request path of `listener` as configured at start.
    pub fn new(
        listener: &Listener,
        live: Arc<Live>,
        active: Arc<ActiveRequests>,
        connector: Arc<Upstreams>,
    ) -> Self {
        let (tls, limits) = (listener.tls, listener.limits);
        Self {
            listener: Arc::from(listener.name.as_str()),
            tls,
            acme: listener.name == LISTENER_HTTP,
            client_auth: listener.client_auth.is_some(),
            proto: if tls {
                forwarded::PROTO_HTTPS.clone()
            } else {
                forwarded::PROTO_HTTP.clone()
            },
            live,
            active,
            limits,
            h2_options: h2::options(limits.h2_window),
            connector,
        }
    }
}

/// What every request of a connection shares.
#[derive(Debug)]
pub struct Connection {
    /// The peer (the address a PROXY header named, or the socket's) and its text.
    pub peer: PeerText,
    /// The client certificate the TLS handshake verified (listeners with `client_auth`), as
    /// the headers sent upstream carry it.
    pub client_cert: Option<ClientCertHeaders>,
}

impl Connection {
    fn of(stream: &Stream) -> Self {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        Self {
            peer: PeerText::new(ip),
            client_cert: verified_client_cert(stream.get_ssl_digest().as_deref()),
        }
    }
}

#[async_trait]
impl ServerApp for ProxyApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let conn = Connection::of(&stream);
        // Both boxed, so that this future is only as large as a tunnel: an upgraded connection
        // lives on in it for as long as the tunnel does, with neither the request's state nor an
        // HTTP/2 connection's.
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            Box::pin(h2::serve(self, stream, conn, shutdown.clone())).await;
            return None;
        }
        let tunnel = Box::pin(h1::serve(self, stream, &conn, shutdown.clone())).await;
        drop(conn);
        if let Some(tunnel) = tunnel {
            tunnel.run().await;
        }
        None
    }
}
