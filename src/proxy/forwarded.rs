//! The forwarding headers a backend sees: X-Forwarded-For (appended to when the peer is a trusted
//! proxy, else replaced by the peer alone), X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP and
//! X-Client-IP (the resolved client, as OpenWebUI's HAProxy example sets them).

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const X_REAL_IP: &str = "x-real-ip";
pub const X_CLIENT_IP: &str = "x-client-ip";

/// The header values to set on the upstream request.
#[derive(Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub forwarded_for: HeaderValue,
    pub proto: HeaderValue,
    pub host: Option<HeaderValue>,
    pub client_ip: HeaderValue,
}

/// The connection's peer and the client it stands for ([`crate::security::client::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub peer: Option<IpAddr>,
    pub client: Option<IpAddr>,
    /// The peer is a trusted proxy: its X-Forwarded-For chain is kept.
    pub keep_chain: bool,
}

/// Computes the forwarding headers from the incoming ones, the peer and client addresses,
/// whether the request came over TLS and the original host.
pub fn forwarded(incoming: &HeaderMap, hop: Hop, tls: bool, host: Option<&str>) -> Forwarded {
    let text = |ip: Option<IpAddr>| ip.map_or_else(|| "unknown".into(), |ip| ip.to_string());
    let peer = text(hop.peer);
    let previous: Vec<&str> = if hop.keep_chain {
        incoming
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let chain = if previous.is_empty() {
        peer.clone()
    } else {
        format!("{}, {peer}", previous.join(", "))
    };
    let client_ip =
        HeaderValue::from_str(&text(hop.client)).unwrap_or(HeaderValue::from_static("unknown"));
    Forwarded {
        forwarded_for: HeaderValue::from_str(&chain).unwrap_or_else(|_| client_ip.clone()),
        proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
        host: host.and_then(|h| HeaderValue::from_str(h).ok()),
        client_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(peer: &str, client: &str, keep_chain: bool) -> Hop {
        Hop {
            peer: Some(peer.parse().expect("ip")),
            client: Some(client.parse().expect("ip")),
            keep_chain,
        }
    }

    #[test]
    fn a_trusted_peer_s_chain_is_appended_to() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.2.2.2 "));
        let f = forwarded(&h, hop("127.0.0.9", "10.2.2.2", true), true, Some("a.test"));
        assert_eq!(f.forwarded_for, "10.1.1.1, 10.2.2.2, 127.0.0.9");
        assert_eq!(f.proto, "https");
        assert_eq!(f.host, Some(HeaderValue::from_static("a.test")));
        assert_eq!(f.client_ip, "10.2.2.2");
    }

    #[test]
    fn an_untrusted_peer_s_chain_is_replaced() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        let f = forwarded(&h, hop("203.0.113.1", "203.0.113.1", false), true, None);
        assert_eq!(f.forwarded_for, "203.0.113.1");
        assert_eq!(f.client_ip, "203.0.113.1");
    }

    #[test]
    fn starts_a_chain_and_marks_plain_http() {
        let f = forwarded(&HeaderMap::new(), hop("::1", "::1", false), false, None);
        assert_eq!(f.forwarded_for, "::1");
        assert_eq!(f.proto, "http");
        assert_eq!(f.host, None);
    }
}
