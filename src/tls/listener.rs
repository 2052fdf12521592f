//! The rustls server configuration of a TLS listener: which cryptography, which cipher suites
//! win, how sessions resume, and the ALPN offer. Built here rather than by pingora's
//! `TlsSettings`, which gives no say over any of it.
//!
//! - **Provider.** aws-lc-rs, rustls's default provider: its X25519 takes half the time of
//!   ring's (the key exchange was over a quarter of a resumed handshake's cost, see
//!   benches/HISTORY.md), and it brings the post-quantum hybrid X25519MLKEM768 that current browsers
//!   ask for first. ring stays the process default for outgoing connections (pingora's
//!   upstream TLS, ACME, DNS APIs, Redis).
//! - **Suite order.** The server's order decides (`ignore_client_order`): AES-128-GCM first.
//!   Clients built on OpenSSL (curl, wrk, most HTTP libraries) list AES-256-GCM-SHA384 first,
//!   whose key schedule runs SHA-384: on CPUs without SHA-512 instructions a tenth of a
//!   handshake's cost when measured with ring. AES-128-GCM-SHA256 uses the SHA extensions
//!   nearly every x86-64 and ARMv8 server has, and is what Go (Caddy, Traefik) picks.
//!   Every TLS 1.3 client must implement it (RFC 8446 §9.1).
//! - **Resumption.** Stateless tickets (rotated every 6 hours by rustls's ticketer) let any
//!   number of clients resume without the server holding state per client; one TLS 1.3 ticket
//!   per handshake (rustls sends two by default, each an extra encryption and record); a session
//!   cache for TLS 1.2 clients that do not take tickets.
//! - **Client certificates.** With `client_auth` the listener verifies them against its CAs
//!   ([`super::client_auth`]) and records a verified one in the connection's TLS digest.

use std::sync::Arc;

use pingora::listeners::tls::{Acceptor, TlsSettings};
use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider, kx_group, Ticketer};
use rustls::crypto::CryptoProvider;
use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::{version, ServerConfig, SupportedCipherSuite};

use super::client_auth;
use crate::config::model::{ClientAuth, Listener};

/// TLS 1.2 sessions kept for clients that resume by session id (about 300 bytes each).
const SESSION_CACHE_ENTRIES: usize = 4096;
/// TLS 1.3 tickets sent after each handshake.
const TLS13_TICKETS: usize = 1;

/// Key exchanges the listener accepts; rustls takes the client's first choice among them, so
/// browsers that lead with the post-quantum hybrid (Chrome, Firefox) get it.
const KX_GROUPS: &[&dyn rustls::crypto::SupportedKxGroup] = &[
    kx_group::X25519MLKEM768,
    kx_group::X25519,
    kx_group::SECP256R1,
    kx_group::SECP384R1,
];

/// The suites a listener offers, in the order it prefers them.
const SUITES: &[SupportedCipherSuite] = &[
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The rustls configuration of a TLS listener whose certificates come from `certs`.
pub fn server_config(certs: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, String> {
    server_config_for(certs, None)
}

/// [`server_config`] of a listener asking for client certificates with `client_auth`.
pub fn server_config_for(
    certs: Arc<dyn ResolvesServerCert>,
    client_auth: Option<&ClientAuth>,
) -> Result<ServerConfig, String> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: SUITES.to_vec(),
        kx_groups: KX_GROUPS.to_vec(),
        ..default_provider()
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match client_auth {
        Some(auth) => builder.with_client_cert_verifier(client_auth::verifier(auth, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.ignore_client_order = true;
    config.ticketer = Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
    config.send_tls13_tickets = TLS13_TICKETS;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The handshake side of a TLS listener, ready for [`Acceptor::tls_handshake`].
pub fn acceptor(certs: Arc<dyn ResolvesServerCert>) -> Result<Acceptor, String> {
    Ok(Acceptor::from_server_config(Arc::new(server_config(
        certs,
    )?)))
}

/// [`acceptor`] for `listener`: with `client_auth`, the handshake verifies client certificates
/// and a verified one is kept in the connection's TLS digest
/// ([`client_auth::verified_client_cert`] reads it back).
pub fn acceptor_for(
    certs: Arc<dyn ResolvesServerCert>,
    listener: &Listener,
) -> Result<Acceptor, String> {
    let Some(auth) = &listener.client_auth else {
        return acceptor(certs);
    };
    let config = Arc::new(server_config_for(certs.clone(), Some(auth))?);
    // pingora runs the handshake-complete callback only for an acceptor built from its
    // settings, which make their own rustls configuration: ours replaces it.
    let mut settings = TlsSettings::with_callbacks(Box::new(client_auth::CaptureClientCertificate))
        .map_err(|e| format!("TLS callbacks: {e}"))?;
    settings.set_cert_resolver(certs);
    let mut acceptor = settings.build();
    acceptor.acceptor = pingora::tls::TlsAcceptor::from(config);
    Ok(acceptor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::sign::CertifiedKey;

    #[derive(Debug)]
    struct NoCertificates;

    impl ResolvesServerCert for NoCertificates {
        fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            None
        }
    }

    #[test]
    fn the_server_s_order_prefers_aes_128_and_sessions_resume() {
        let config = server_config(Arc::new(NoCertificates)).unwrap();
        assert!(config.ignore_client_order);
        let suites = &config.crypto_provider().cipher_suites;
        assert_eq!(suites[0], cipher_suite::TLS13_AES_128_GCM_SHA256);
        assert!(suites.contains(&cipher_suite::TLS13_CHACHA20_POLY1305_SHA256));
        assert!(config.ticketer.enabled());
        let groups: Vec<_> = config
            .crypto_provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        assert_eq!(
            groups[..2],
            [
                rustls::NamedGroup::X25519MLKEM768,
                rustls::NamedGroup::X25519
            ]
        );
        assert_eq!(config.send_tls13_tickets, 1);
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
