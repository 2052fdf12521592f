//! The forwarding headers a backend sees: X-Forwarded-For (appended to when the peer is a trusted
//! proxy, else replaced by the peer alone), X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP and
//! X-Client-IP (the resolved client, as OpenWebUI's HAProxy example sets them). The peer's
//! address text is made once per connection ([`PeerText`]); a request from an untrusted peer
//! then costs no formatting at all.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_CLIENT_IP: HeaderName = HeaderName::from_static("x-client-ip");

/// `X-Forwarded-Proto` of a TLS listener.
pub static PROTO_HTTPS: HeaderValue = HeaderValue::from_static("https");
/// `X-Forwarded-Proto` of a plain listener.
pub static PROTO_HTTP: HeaderValue = HeaderValue::from_static("http");
static UNKNOWN: HeaderValue = HeaderValue::from_static("unknown");

/// A connection's peer address and its text as a header value.
#[derive(Debug, Clone)]
pub struct PeerText {
    pub ip: Option<IpAddr>,
    pub text: HeaderValue,
}

impl PeerText {
    pub fn new(ip: Option<IpAddr>) -> Self {
        Self {
            ip,
            text: ip_value(ip),
        }
    }
}

/// The header values to set on the upstream request.
#[derive(Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub forwarded_for: HeaderValue,
    pub client_ip: HeaderValue,
}

/// The resolved client ([`crate::security::client::resolve`]) and whether the peer is a trusted
/// proxy whose X-Forwarded-For chain is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub client: Option<IpAddr>,
    pub keep_chain: bool,
}

/// Computes X-Forwarded-For and the client address headers from the incoming headers, the peer
/// and the client it stands for.
pub fn forwarded(incoming: &HeaderMap, peer: &PeerText, hop: Hop) -> Forwarded {
    let client_ip = match hop.client {
        client if client == peer.ip => peer.text.clone(),
        client => ip_value(client),
    };
    if !hop.keep_chain {
        return Forwarded {
            forwarded_for: peer.text.clone(),
            client_ip,
        };
    }
    let mut chain = String::new();
    for entry in incoming
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        chain.push_str(entry);
        chain.push_str(", ");
    }
    let forwarded_for = if chain.is_empty() {
        peer.text.clone()
    } else {
        chain.push_str(peer.text.to_str().unwrap_or("unknown"));
        HeaderValue::from_str(&chain).unwrap_or_else(|_| client_ip.clone())
    };
    Forwarded {
        forwarded_for,
        client_ip,
    }
}

fn ip_value(ip: Option<IpAddr>) -> HeaderValue {
    ip.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok())
        .unwrap_or_else(|| UNKNOWN.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("ip"))
    }

    #[test]
    fn a_trusted_peer_s_chain_is_appended_to() {
        let mut h = HeaderMap::new();
        h.append(
            X_FORWARDED_FOR.clone(),
            HeaderValue::from_static("10.1.1.1"),
        );
        h.append(
            X_FORWARDED_FOR.clone(),
            HeaderValue::from_static("10.2.2.2 "),
        );
        let hop = Hop {
            client: ip("10.2.2.2"),
            keep_chain: true,
        };
        let f = forwarded(&h, &PeerText::new(ip("127.0.0.9")), hop);
        assert_eq!(f.forwarded_for, "10.1.1.1, 10.2.2.2, 127.0.0.9");
        assert_eq!(f.client_ip, "10.2.2.2");
    }

    #[test]
    fn an_untrusted_peer_s_chain_is_replaced() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("6.6.6.6"));
        let peer = PeerText::new(ip("203.0.113.1"));
        let hop = Hop {
            client: ip("203.0.113.1"),
            keep_chain: false,
        };
        let f = forwarded(&h, &peer, hop);
        assert_eq!(f.forwarded_for, "203.0.113.1");
        assert_eq!(f.client_ip, "203.0.113.1");
    }

    #[test]
    fn starts_a_chain_and_names_unknown_peers() {
        let hop = Hop {
            client: ip("::1"),
            keep_chain: true,
        };
        let f = forwarded(&HeaderMap::new(), &PeerText::new(ip("::1")), hop);
        assert_eq!(f.forwarded_for, "::1");
        let nobody = PeerText::new(None);
        assert_eq!(nobody.text, "unknown");
        assert_eq!(PROTO_HTTPS, "https");
        assert_eq!(PROTO_HTTP, "http");
    }
}
