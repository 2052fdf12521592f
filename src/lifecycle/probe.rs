//! Readiness probing of the daemon's own listeners: a TCP connect for plain ones, and for TLS ones
//! a complete handshake that ends with close_notify, so that start-up leaves no "handshake eof"
//! errors in the log. The probe trusts any certificate: it only asks "is someone answering".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::tls::upstream::Unverified;

/// One listening socket to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub tls: bool,
}

/// Time allowed for one connection attempt (TCP plus, for TLS, the handshake).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Where to connect to reach a listening address (wildcards through loopback).
pub fn probe_address(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), address.port())
        }
        _ => address,
    }
}

/// Waits until every endpoint accepts connections; false on timeout.
pub async fn wait_until_listening(endpoints: &[Endpoint], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    // Without a client configuration the TLS probe is a plain connect (and logs one eof).
    let connector = probe_client_config()
        .ok()
        .map(|config| tokio_rustls::TlsConnector::from(Arc::new(config)));
    for endpoint in endpoints {
        let target = probe_address(endpoint.address);
        loop {
            let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, TcpStream::connect(target)).await;
            if let Ok(Ok(stream)) = attempt {
                if let (true, Some(connector)) = (endpoint.tls, &connector) {
                    // Accepting TCP is what counts; the handshake only closes the probe politely.
                    let name = ServerName::try_from("localhost").map(|n| n.to_owned());
                    if let Ok(name) = name {
                        let handshake = connector.connect(name, stream);
                        if let Ok(Ok(mut tls)) =
                            tokio::time::timeout(ATTEMPT_TIMEOUT, handshake).await
                        {
                            let _ = tls.shutdown().await;
                        }
                    }
                }
                break;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    true
}

fn probe_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Unverified(provider.clone()));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_through_loopback() {
        let any4: SocketAddr = "0.0.0.0:80".parse().expect("addr");
        let any6: SocketAddr = "[::]:443".parse().expect("addr");
        let exact: SocketAddr = "127.0.0.2:8080".parse().expect("addr");
        assert_eq!(probe_address(any4), "127.0.0.1:80".parse().expect("addr"));
        assert_eq!(probe_address(any6), "[::1]:443".parse().expect("addr"));
        assert_eq!(probe_address(exact), exact);
    }

    #[tokio::test]
    async fn readiness_waits_for_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = Endpoint {
            address: listener.local_addr().expect("addr"),
            tls: false,
        };
        assert!(wait_until_listening(&[open], Duration::from_secs(2)).await);
        drop(listener);
        assert!(!wait_until_listening(&[open], Duration::from_millis(300)).await);
    }
}
