//! The validated configuration before its look-ups: what `validate` makes of the file without
//! touching the file system or the network, and what `resolve` completes into a [`Config`].
//!
//! Each draft type is its model type with the looked-up parts held apart: an upstream's servers
//! still by name, a route's key and users files not yet read, certificate files not yet loaded.
//! Every element that decoded is kept, also one with errors, so that its files and names are
//! still looked up and their errors reported with the others; a draft with errors never becomes
//! a [`Config`].
//!
//! [`Config`]: super::model::Config

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::model::{
    Acme, AcmeCertificate, Admin, Cidr, ClientAuthMode, Listener, Log, Otel, Redis, Route,
    TokenQuota, Upstream, UpstreamAlpn,
};

/// [`Config`](super::model::Config) before its look-ups.
#[derive(Debug)]
pub(super) struct Draft {
    pub source: PathBuf,
    pub state_dir: PathBuf,
    /// `None`: one worker per core, asked of the system when resolving.
    pub workers: Option<usize>,
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    pub tls: DraftTls,
    pub acme: Acme,
    pub routes: Vec<DraftRoute>,
    pub upstreams: BTreeMap<String, DraftUpstream>,
    pub shutdown_grace: Duration,
    pub log: Log,
    pub trusted_proxies: Vec<Cidr>,
    pub max_connections_per_ip: Option<u32>,
    pub cluster: Option<DraftCluster>,
    /// `client_auth` of the listeners (the listeners themselves have none yet).
    pub client_auths: Vec<DraftClientAuth>,
    /// `geoip`, when a route uses `countries`.
    pub geoip: Option<DraftGeoip>,
    pub otel: Option<Otel>,
    /// Files the model names that must be readable now (secrets, CA roots) but are read again
    /// where they are used, so the model keeps only their paths.
    pub checked_files: Vec<CheckedFile>,
}

/// [`Tls`](super::model::Tls) with its file certificates not yet loaded.
#[derive(Debug, Default)]
pub(super) struct DraftTls {
    pub hsts: Option<Duration>,
    pub certificates: Vec<CertificateFiles>,
    pub acme: Vec<AcmeCertificate>,
}

/// A certificate from files: where the chain and the key are.
#[derive(Debug)]
pub(super) struct CertificateFiles {
    /// Key path of the element (`tls.certificates[0]`); errors go to its `cert` and `key`.
    pub at: String,
    pub name: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// A route whose `api_keys` and `basic_auth` files are not read yet: `route.security` has
/// neither; they are set from the two fields beside it.
#[derive(Debug)]
pub(super) struct DraftRoute {
    pub route: Route,
    pub api_keys: Option<DraftApiKeys>,
    pub basic_auth: Option<DraftBasicAuth>,
}

/// A file named in the configuration: the text as written (for messages) and the path it means.
#[derive(Debug)]
pub(super) struct NamedFile {
    pub written: String,
    pub path: PathBuf,
}

/// [`ApiKeys`](super::model::ApiKeys) before its files are read.
#[derive(Debug)]
pub(super) struct DraftApiKeys {
    /// Key path of `api_keys`.
    pub at: String,
    /// One hex SHA-256 digest per line.
    pub file: NamedFile,
    pub header: String,
    pub upstream_key_file: Option<NamedFile>,
    pub quota: Option<TokenQuota>,
}

/// [`BasicAuth`](super::model::BasicAuth) before its users file is read.
#[derive(Debug)]
pub(super) struct DraftBasicAuth {
    /// Key path of `basic_auth`.
    pub at: String,
    pub realm: String,
    pub users_file: NamedFile,
    pub forward_authorization: bool,
}

/// An upstream whose servers are not resolved yet: `upstream.servers` is empty; it is filled
/// from `servers`. Its `tls` files are not read yet either: `upstream.tls` is set from `tls`.
#[derive(Debug)]
pub(super) struct DraftUpstream {
    pub upstream: Upstream,
    pub servers: Vec<DraftServer>,
    pub tls: Option<DraftUpstreamTls>,
}

/// [`UpstreamTls`](super::model::UpstreamTls) before its files are read.
#[derive(Debug)]
pub(super) struct DraftUpstreamTls {
    /// Key path of `tls`.
    pub at: String,
    pub sni: Option<String>,
    pub verify: bool,
    /// `None`: the system roots (when `verify`).
    pub ca: Option<NamedFile>,
    /// `client_cert` and `client_key`.
    pub identity: Option<(NamedFile, NamedFile)>,
    pub alpn: UpstreamAlpn,
}

/// [`ClientAuth`](super::model::ClientAuth) of a listener before its CA file is read.
#[derive(Debug)]
pub(super) struct DraftClientAuth {
    /// The listener's name.
    pub listener: String,
    /// Key path of `client_auth.ca`.
    pub at: String,
    pub mode: ClientAuthMode,
    pub ca: NamedFile,
}

/// [`Geoip`](super::model::Geoip) before its database is read.
#[derive(Debug)]
pub(super) struct DraftGeoip {
    /// Key path of `geoip.database`.
    pub at: String,
    pub database: NamedFile,
}

/// [`Server`](super::model::Server) before its address is resolved.
#[derive(Debug)]
pub(super) struct DraftServer {
    /// Key path of its `address`.
    pub at: String,
    /// As written (`host:port`).
    pub address: String,
    pub host: ServerHost,
    pub weight: u32,
    pub max_inflight: Option<u32>,
    pub drain: bool,
    pub models: Option<Vec<String>>,
    pub kv_events: Option<super::model::KvEvents>,
}

/// A server address: already a socket address, or a name to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ServerHost {
    Socket(SocketAddr),
    Name { host: String, port: u16 },
}

/// [`Cluster`](super::model::Cluster) before its default instance name is asked of the host.
#[derive(Debug)]
pub(super) struct DraftCluster {
    /// `None`: the host name.
    pub name: Option<String>,
    pub redis: Redis,
    pub lock_ttl: Duration,
    pub sync_interval: Duration,
    pub timeout: Duration,
}

/// A file that must be readable when the configuration is loaded.
#[derive(Debug)]
pub(super) struct CheckedFile {
    /// Key path of the key that names it.
    pub at: String,
    pub path: PathBuf,
    pub kind: CheckedFileKind,
}

/// What a checked file must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckedFileKind {
    /// A secret: anything but blank.
    Secret,
    /// `acme.ca_root`: a PEM certificate.
    AcmeCaRoot,
    /// `cluster.redis.tls.ca`: a PEM certificate.
    RedisCaRoot,
}
