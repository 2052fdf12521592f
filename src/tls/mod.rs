//! TLS: the SNI certificate store (survives reloads), the rustls resolver over it, the
//! listeners' rustls configuration with their client certificates, https to upstream servers,
//! the process's default provider, and the self-signed placeholder certificate made on first
//! start.

pub mod build;
pub mod client_auth;
pub mod listener;
pub mod metrics;
pub mod placeholder;
pub mod store;
pub mod upstream;

pub use build::build_index;
pub use store::{CertIndex, CertStore};

/// Makes ring the process's rustls provider if none is installed yet. Needed before any client
/// configuration that names no provider (pingora's upstream TLS, ACME, DNS APIs, Redis): with
/// aws-lc-rs also linked for the TLS listeners, rustls cannot pick one by itself.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
