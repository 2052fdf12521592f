//! The server an attempt connects to, as pingora's connector and ferrogate's idle pool see it:
//! plain HTTP/1 over TCP with the upstream's connect timeout, pooled by its address alone.
//! pingora's `HttpPeer` describes every kind of peer (TLS, proxies, client certificates), so its
//! pool key hashes all of that twice per request, and it asks the kernel for a pooled socket's peer
//! address (`getpeername`) before every reuse in case two peers' hashes collide. An IPv4 address
//! and port fit the 64-bit key exactly, so no two servers can share one and that check is left out;
//! an IPv6 key is a hash, and keeps the check.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr as InetAddr;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use pingora::protocols::l4::socket::SocketAddr;
use pingora::upstreams::peer::{Peer, PeerOptions};

/// Marks the key of an IPv6 server (an IPv4 key uses only the low 48 bits).
const IPV6_KEY: u64 = 1 << 63;

/// A server of an upstream, reached over plain TCP.
#[derive(Clone)]
pub struct ServerPeer {
    address: SocketAddr,
    key: u64,
    options: PeerOptions,
}

impl ServerPeer {
    /// `socket`, connected within `connect`.
    pub fn new(socket: InetAddr, connect: Duration) -> Self {
        let mut options = PeerOptions::new();
        options.connection_timeout = Some(connect);
        Self {
            address: SocketAddr::Inet(socket),
            key: pool_key(socket),
            options,
        }
    }
}

/// The pool key of `socket`: the address and port themselves for IPv4, a hash for IPv6.
fn pool_key(socket: InetAddr) -> u64 {
    match socket {
        InetAddr::V4(v4) => (u64::from(v4.ip().to_bits()) << 16) | u64::from(v4.port()),
        InetAddr::V6(v6) => {
            let mut hasher = rustc_hash::FxHasher::default();
            v6.hash(&mut hasher);
            hasher.finish() | IPV6_KEY
        }
    }
}

impl fmt::Display for ServerPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)
    }
}

impl Peer for ServerPeer {
    fn address(&self) -> &SocketAddr {
        &self.address
    }

    fn tls(&self) -> bool {
        false
    }

    fn sni(&self) -> &str {
        ""
    }

    fn reuse_hash(&self) -> u64 {
        self.key
    }

    fn get_peer_options(&self) -> Option<&PeerOptions> {
        Some(&self.options)
    }

    fn get_mut_peer_options(&mut self) -> Option<&mut PeerOptions> {
        Some(&mut self.options)
    }

    /// A pooled connection under an IPv4 key can only be to this server; one under an IPv6 key
    /// is checked against the socket's peer address.
    fn matches_fd<V: AsRawFd>(&self, fd: V) -> bool {
        if self.key & IPV6_KEY == 0 {
            return true;
        }
        SocketAddr::from_raw_fd(fd.as_raw_fd(), true).as_ref() == Some(&self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_are_the_address_and_port_themselves() {
        let a: InetAddr = "10.0.0.1:8080".parse().unwrap();
        let b: InetAddr = "10.0.0.1:8081".parse().unwrap();
        let c: InetAddr = "10.0.1.1:8080".parse().unwrap();
        assert_eq!(pool_key(a), 0x0a00_0001_1f90);
        assert_ne!(pool_key(a), pool_key(b));
        assert_ne!(pool_key(a), pool_key(c));
        assert_eq!(pool_key(a) & IPV6_KEY, 0);
        let last: InetAddr = "255.255.255.255:65535".parse().unwrap();
        assert_eq!(pool_key(last) & IPV6_KEY, 0);
    }

    #[test]
    fn ipv6_keys_are_marked_and_checked() {
        let a: InetAddr = "[::1]:8080".parse().unwrap();
        let b: InetAddr = "[::1]:8081".parse().unwrap();
        assert_ne!(pool_key(a) & IPV6_KEY, 0);
        assert_ne!(pool_key(a), pool_key(b));
        assert_eq!(pool_key(a), pool_key(a));
    }

    #[test]
    fn the_peer_carries_its_timeouts() {
        let peer = ServerPeer::new("127.0.0.1:9".parse().unwrap(), Duration::from_secs(3));
        assert!(!peer.tls());
        assert_eq!(peer.connection_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(peer.to_string(), "127.0.0.1:9");
    }
}
