//! ACME: certificates issued and renewed by themselves. `manager` runs one task per ACME
//! certificate; `issue` is one order; `http01` holds the tokens the plain HTTP listener answers;
//! `dns01` publishes TXT records through a provider; `storage` keeps the account and
//! certificates in `state_dir`; `schedule` is the pure timing; `status` what `ferrogate certs`
//! and metrics show.

pub mod account;
pub mod dns01;
pub mod http01;
pub mod issue;
pub mod manager;
pub mod report;
pub mod schedule;
pub mod status;
pub mod storage;

pub use manager::AcmeManager;

/// Makes ring the process's rustls provider if none is installed yet (pingora installs ring
/// too; the ACME, DNS API and Redis clients must agree with it). Needed before any client
/// configuration that names no provider: with aws-lc-rs also linked for the TLS listeners,
/// rustls cannot pick one by itself.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
