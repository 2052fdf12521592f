//! Which process holds a listening socket, read from Linux's /proc: a server the harness started
//! is up when it alone holds its sockets. A connection that succeeds proves nothing, since
//! another test's server may sit on the same port.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A socket a server waits on: TCP in LISTEN, or UDP bound and unconnected (DNS servers answer on
/// both at one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

/// Who holds a socket, as far as one process is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nobody waits on it yet.
    Nobody,
    /// Only this process.
    Alone,
    /// Another process (maybe beside this one: SO_REUSEPORT lets several bind one port).
    Other,
}

/// Who holds `socket`, seen from process `pid`.
pub fn holder(pid: u32, socket: Bound) -> Holder {
    let waiting: Vec<u64> = waiting_sockets(socket)
        .into_iter()
        .filter(|(s, _)| *s == socket)
        .map(|(_, inode)| inode)
        .collect();
    if waiting.is_empty() {
        return Holder::Nobody;
    }
    let open = open_socket_inodes(pid);
    if waiting.iter().all(|inode| open.contains(inode)) {
        Holder::Alone
    } else {
        Holder::Other
    }
}

/// Every TCP address process `pid` listens on.
pub fn tcp_listening(pid: u32) -> Vec<SocketAddr> {
    let open = open_socket_inodes(pid);
    waiting_sockets(Bound::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))))
        .into_iter()
        .filter(|(_, inode)| open.contains(inode))
        .filter_map(|(s, _)| match s {
            Bound::Tcp(addr) => Some(addr),
            Bound::Udp(_) => None,
        })
        .collect()
}

/// Inodes of the sockets among process `pid`'s open files (`socket:[INODE]` links).
fn open_socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Every waiting socket of `like`'s transport (IPv4 and IPv6) with its inode.
fn waiting_sockets(like: Bound) -> Vec<(Bound, u64)> {
    // The `st` column: 0A is TCP_LISTEN; an unconnected UDP socket shows 07 (TCP_CLOSE).
    let (tables, state, make): ([&str; 2], &str, fn(SocketAddr) -> Bound) = match like {
        Bound::Tcp(_) => (["/proc/net/tcp", "/proc/net/tcp6"], "0A", Bound::Tcp),
        Bound::Udp(_) => (["/proc/net/udp", "/proc/net/udp6"], "07", Bound::Udp),
    };
    let mut out = Vec::new();
    for table in tables {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        out.extend(text.lines().skip(1).filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&state) {
                return None;
            }
            let addr = parse_local_address(fields.get(1)?)?;
            let inode = fields.get(9)?.parse().ok()?;
            Some((make(addr), inode))
        }));
    }
    out
}

/// `0100007F:1F90` → 127.0.0.1:8080. The address is the kernel's in-memory bytes printed as
/// 32-bit words on a little-endian machine; the port is in host order.
fn parse_local_address(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_le_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_parse_as_the_kernel_prints_them() {
        assert_eq!(
            parse_local_address("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_local_address("00000000000000000000000001000000:0035"),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(parse_local_address("0100007F"), None);
        assert_eq!(parse_local_address("zz00007F:0050"), None);
    }

    #[test]
    fn this_process_alone_holds_its_listener_and_a_bound_udp_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = std::process::id();
        let tcp = Bound::Tcp(listener.local_addr().unwrap());
        assert_eq!(holder(me, tcp), Holder::Alone);
        assert_eq!(
            holder(me, Bound::Udp(udp.local_addr().unwrap())),
            Holder::Alone
        );
        assert!(tcp_listening(me).contains(&listener.local_addr().unwrap()));
        // PID 1 holds none of this process's sockets.
        assert_eq!(holder(1, tcp), Holder::Other);
        drop(listener);
        assert_eq!(holder(me, tcp), Holder::Nobody);
    }
}
