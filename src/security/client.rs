//! Which address is the client's: the peer's, unless the peer is one of `trusted_proxies`, in
//! which case X-Forwarded-For is walked from the right past trusted hops to the first address
//! that is not trusted (what nginx's `real_ip_recursive on` does). Pure.

use std::net::IpAddr;

use http::HeaderMap;

use crate::config::model::Cidr;

/// X-Forwarded-For entries looked at, at most (from the right).
pub const MAX_CHAIN: usize = 32;

/// The client address and whether the peer is a trusted proxy (whose chain may be kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: Option<IpAddr>,
    pub peer_trusted: bool,
}

/// Resolves the client address of a request from `peer` carrying `headers`.
pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> ClientAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    let Some(peer_ip) = peer.filter(|ip| is_trusted(*ip)) else {
        return ClientAddr {
            ip: peer,
            peer_trusted: false,
        };
    };
    let mut client = peer_ip;
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let entries = values
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(','))
        .map(str::trim)
        .take(MAX_CHAIN);
    for entry in entries {
        // An entry we cannot read ends the walk: nothing left of it can be trusted.
        let Ok(ip) = entry.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    ClientAddr {
        ip: Some(client),
        peer_trusted: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let r = resolve(ip("203.0.113.9"), &xff(&["1.2.3.4"]), &trusted);
        assert_eq!(
            r,
            ClientAddr {
                ip: ip("203.0.113.9"),
                peer_trusted: false
            }
        );
        let r = resolve(ip("203.0.113.9"), &xff(&["1.2.3.4"]), &[]);
        assert_eq!(r.ip, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        // A client-forged first entry stays ignored: the walk stops at the first untrusted one.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.0.0.3"]);
        let r = resolve(ip("10.0.0.2"), &h, &trusted);
        assert_eq!(
            r,
            ClientAddr {
                ip: ip("198.51.100.7"),
                peer_trusted: true
            }
        );
        // No header: the trusted peer itself.
        assert_eq!(
            resolve(ip("10.0.0.2"), &HeaderMap::new(), &trusted).ip,
            ip("10.0.0.2")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            resolve(ip("10.0.0.2"), &xff(&["10.1.1.1"]), &trusted).ip,
            ip("10.1.1.1")
        );
        // Garbage ends the walk at the last readable hop.
        let h = xff(&["1.1.1.1, garbage, 10.0.0.9"]);
        assert_eq!(resolve(ip("10.0.0.2"), &h, &trusted).ip, ip("10.0.0.9"));
    }
}
