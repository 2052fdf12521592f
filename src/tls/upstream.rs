//! https to an upstream's servers (`upstreams.NAME.tls`), compiled once per snapshot into what
//! both TLS clients take: pingora's connector (the request path: [`ServerTls::configure`] sets
//! an [`HttpPeer`]'s SNI, verification, CA, client certificate and ALPN) and one rustls
//! [`ClientConfig`] for the health checker and the scraper, which speak HTTP/1.1.
//!
//! A server written as an IP address gets no SNI (rustls sends none for an address) and its
//! certificate must name that address; pingora's connector would skip verification for an
//! empty name, so the address is passed as the name, never nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::protocols::tls::{CaType, ALPN};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::model::{ServerVerification, UpstreamAlpn, UpstreamTls};

/// The ALPN offer of the health checker and the scraper: they speak HTTP/1.1.
const CHECKER_ALPN: &[u8] = b"http/1.1";

/// One upstream's compiled TLS settings.
#[derive(Debug)]
pub struct ServerTls {
    /// `tls.sni`; `None`: each server's own host.
    sni: Option<Arc<str>>,
    verify: bool,
    /// The `ca` bundle for pingora; `None`: its system roots.
    ca: Option<Arc<CaType>>,
    client_cert_key: Option<Arc<CertKey>>,
    alpn: ALPN,
    /// For the health checker and scraper; an error makes their checks fail (never plain).
    checker_config: Result<Arc<ClientConfig>, Arc<str>>,
}

impl ServerTls {
    /// Compiles validated settings (their files were read and checked at load).
    pub fn compile(settings: &UpstreamTls) -> Self {
        let ca = match &settings.verification {
            ServerVerification::Bundle(bundle) => Some(
                bundle
                    .certificates
                    .iter()
                    .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            ServerVerification::SystemRoots(_) | ServerVerification::Off => None,
        };
        let client_cert_key = settings.identity.as_ref().map(|identity| {
            let chain = identity.chain.iter().map(|der| der.to_vec()).collect();
            Arc::new(CertKey::new(chain, identity.key.secret_der().to_vec()))
        });
        Self {
            sni: settings.sni.as_deref().map(Arc::from),
            verify: settings.verification != ServerVerification::Off,
            ca,
            client_cert_key,
            alpn: match settings.alpn {
                UpstreamAlpn::Http1 => ALPN::H1,
            },
            checker_config: checker_config(settings)
                .map(Arc::new)
                .map_err(|e| Arc::from(e.as_str())),
        }
    }

    /// Whether server certificates are checked.
    pub fn verifies(&self) -> bool {
        self.verify
    }

    /// The name a server written as `address` (`host:port`) is reached by: `tls.sni`, else the
    /// host as written (for an IP address: the address, sent as no SNI).
    pub fn server_name(&self, address: &str) -> String {
        if let Some(sni) = &self.sni {
            return sni.to_string();
        }
        if let Ok(socket) = address.parse::<SocketAddr>() {
            return socket.ip().to_string();
        }
        address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .to_string()
    }

    /// An https peer for the server at `socket`, written as `address`.
    pub fn peer(&self, socket: SocketAddr, address: &str) -> HttpPeer {
        let mut peer = HttpPeer::new(socket, true, String::new());
        self.configure(&mut peer, address);
        peer
    }

    /// Makes `peer` (the server written as `address`) an https peer with these settings.
    pub fn configure(&self, peer: &mut HttpPeer, address: &str) {
        peer.scheme = pingora::upstreams::peer::Scheme::HTTPS;
        peer.sni = self.server_name(address);
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
        peer.options.alpn = self.alpn.clone();
        peer.client_cert_key = self.client_cert_key.clone();
    }

    /// The rustls configuration of the health checker and scraper, or why there is none.
    pub fn checker_config(&self) -> Result<&Arc<ClientConfig>, &str> {
        self.checker_config.as_ref().map_err(|e| &**e)
    }

    /// The rustls server name for `address` (see [`ServerTls::server_name`]).
    pub fn rustls_server_name(&self, address: &str) -> Result<ServerName<'static>, String> {
        let name = self.server_name(address);
        ServerName::try_from(name.clone())
            .map_err(|_| format!("`{name}` is not a valid TLS server name"))
    }
}

/// The rustls client configuration for HTTP/1.1 checks with `settings`.
fn checker_config(settings: &UpstreamTls) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let roots = |certificates: &[CertificateDer<'static>]| {
        let mut store = RootCertStore::empty();
        let (_, _) = store.add_parsable_certificates(certificates.iter().cloned());
        store
    };
    let builder = match &settings.verification {
        ServerVerification::SystemRoots(certificates) => {
            builder.with_root_certificates(roots(certificates))
        }
        ServerVerification::Bundle(bundle) => {
            builder.with_root_certificates(roots(&bundle.certificates))
        }
        ServerVerification::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
    };
    let mut config = match &settings.identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.to_vec(), identity.key.clone_key())
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![CHECKER_ALPN.to_vec()];
    Ok(config)
}

/// Takes any certificate, but still checks the handshake's signatures (the peer holds the key of
/// the certificate it showed): upstreams with `verify: false`, and the daemon's probe of its own
/// listeners.
#[derive(Debug)]
pub struct Unverified(pub Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
