//! The `allow`/`deny` decision for a client address. Pure.

use std::net::IpAddr;

use crate::config::model::Cidr;

/// Whether `client` may use a route: not in `deny`, and in `allow` when `allow` is not empty.
/// An unknown client address (a Unix socket peer) passes only when neither list is set.
pub fn permits(allow: &[Cidr], deny: &[Cidr], client: Option<IpAddr>) -> bool {
    let Some(ip) = client else {
        return allow.is_empty() && deny.is_empty();
    };
    if deny.iter().any(|range| range.contains(ip)) {
        return false;
    }
    allow.is_empty() || allow.iter().any(|range| range.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn deny_wins_over_allow() {
        let allow = cidrs(&["10.0.0.0/8"]);
        let deny = cidrs(&["10.9.0.0/16"]);
        assert!(permits(&allow, &deny, ip("10.1.2.3")));
        assert!(!permits(&allow, &deny, ip("10.9.2.3")));
        assert!(!permits(&allow, &deny, ip("192.0.2.1")));
    }

    #[test]
    fn empty_lists_let_everyone_in() {
        assert!(permits(&[], &[], ip("192.0.2.1")));
        assert!(permits(&[], &[], None));
        assert!(permits(&[], &cidrs(&["10.0.0.0/8"]), ip("192.0.2.1")));
        assert!(!permits(&[], &cidrs(&["10.0.0.0/8"]), None));
    }

    #[test]
    fn mapped_addresses_match_ipv4_ranges() {
        let allow = cidrs(&["127.0.0.0/8"]);
        assert!(permits(&allow, &[], ip("::ffff:127.0.0.1")));
        assert!(!permits(&allow, &[], ip("::1")));
    }
}
