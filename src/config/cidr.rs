//! CIDR ranges (`10.0.0.0/8`, `fd00::/8`, or a bare address meaning one host) for `admin.allow`:
//! parsing with a readable error and membership tests. Pure; IPv4-mapped IPv6 peers match IPv4
//! ranges.

use std::fmt;
use std::net::IpAddr;

/// An address range: the network address (host bits cleared) and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN` or a bare `ADDR` (a single host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid CIDR range `{text}`: expected e.g. 10.0.0.0/8, 192.168.1.5 or fd00::/8"
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(len) => match len.trim().parse::<u8>() {
                Ok(len) if len <= max => len,
                _ => return Err(bad()),
            },
            None => max,
        };
        Ok(Self {
            network: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `addr` with every bit after the first `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(prefix)))
            };
            IpAddr::V4(kept.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(prefix)))
            };
            IpAddr::V6(kept.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_ranges_and_single_hosts() {
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            Cidr::parse("192.168.1.5").unwrap().to_string(),
            "192.168.1.5/32"
        );
        assert_eq!(Cidr::parse("fd00::1/8").unwrap().to_string(), "fd00::/8");
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        for bad in ["", "10.0.0.0/33", "::/129", "x/8", "10.0.0/8", "10.0.0.0/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn matches_members_only() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert!(
            net.contains(ip("::ffff:10.0.0.7")),
            "IPv4-mapped peers match"
        );
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
    }
}
