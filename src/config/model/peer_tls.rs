//! Validated TLS with peers: client certificates a listener asks for (`client_auth`), https to
//! an upstream's servers (`tls`), and the country database (`geoip`). Files are already read:
//! the CA bundles, the client certificate and key, the database.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::geoip::GeoipDatabase;

/// A PEM bundle of CA certificates, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: PathBuf,
    /// At least one.
    pub certificates: Arc<[CertificateDer<'static>]>,
}

/// Whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// The handshake fails without a valid certificate.
    Required,
    /// A client may come without one; one it presents must verify.
    Optional,
}

impl ClientAuthMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
        }
    }
}

/// `listeners.….client_auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    /// The CAs whose client certificates are accepted.
    pub ca: CaBundle,
}

/// How an upstream's server certificates are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerVerification {
    /// Against the system's roots (read at load).
    SystemRoots(Arc<[CertificateDer<'static>]>),
    /// Against the `ca` bundle.
    Bundle(CaBundle),
    /// Not at all (`verify: false`).
    Off,
}

/// Protocols offered to an upstream's servers by ALPN: HTTP/1.1, the protocol every request,
/// health check and scrape speaks to servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamAlpn {
    /// `[http/1.1]`.
    #[default]
    Http1,
}

/// A client certificate presented to servers that ask (`client_cert` + `client_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Leaf first.
    pub chain: Arc<[CertificateDer<'static>]>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

/// `upstreams.NAME.tls`: https to every server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The name sent and verified; `None`: each server's host name as written (none for an IP
    /// address, whose certificate is then checked for that address).
    pub sni: Option<String>,
    pub verification: ServerVerification,
    pub identity: Option<ClientIdentity>,
    pub alpn: UpstreamAlpn,
}

/// The top-level `geoip` (only when a route uses `countries`).
#[derive(Debug, Clone)]
pub struct Geoip {
    pub database: PathBuf,
    /// The database as read at load.
    pub loaded: Arc<GeoipDatabase>,
}
