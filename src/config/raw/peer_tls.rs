//! The serde mirror of TLS with peers: client certificates on a listener (`client_auth`) and
//! https to an upstream's servers (`tls`).

use serde::Deserialize;

/// `listeners.….client_auth`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    /// PEM bundle of the CAs whose client certificates are accepted.
    pub ca: String,
    pub mode: Option<RawClientAuthMode>,
}

/// `client_auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawClientAuthMode {
    Required,
    Optional,
}

/// `upstreams.NAME.tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub ca: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub alpn: Option<Vec<String>>,
}
