//! PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy specifies them: an incremental
//! parser that always says how many more bytes it needs, so the reader never consumes a byte past
//! the header (the TLS handshake or HTTP request that follows stays in the socket). Pure; written
//! here rather than taken from a crate because it is ~150 lines, must never over-read, and needs
//! only the source address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the specification's bound).
pub const V1_MAX_LEN: usize = 107;
/// The most v2 address and TLV bytes accepted (the specification allows 65535).
pub const V2_MAX_PAYLOAD: usize = 4096;
/// Neither form is shorter: `PROXY UNKNOWN\r\n` is 15 bytes, a v2 header at least 16.
const MIN_LEN: usize = 15;
const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete header's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client; `None` for `UNKNOWN` / `LOCAL` / non-IP families (keep the peer).
    pub source: Option<SocketAddr>,
    /// Bytes the header took.
    pub len: usize,
}

/// What the parser wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Done(ProxyHeader),
    /// Read exactly this many more bytes, then call again with all bytes so far.
    More(usize),
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither signature: the peer did not send a PROXY header.
    Missing,
    /// A header that breaks the specification.
    Invalid(&'static str),
}

/// Parses the bytes read so far.
pub fn parse(buf: &[u8]) -> Result<Step, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] && (n == V2_SIGNATURE.len() || buf.len() < MIN_LEN) {
        if buf.len() < MIN_LEN {
            return Ok(Step::More(MIN_LEN - buf.len()));
        }
        return parse_v2(buf);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::Missing);
    }
    if buf.len() < MIN_LEN {
        return Ok(Step::More(MIN_LEN - buf.len()));
    }
    parse_v1(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Step, ProxyError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::Invalid("v1 line too long"));
        }
        if buf.contains(&b'\n') || buf.contains(&b'\0') {
            return Err(ProxyError::Invalid("v1 line has a bare LF or NUL"));
        }
        return Ok(Step::More(1));
    };
    let len = end + 2;
    if len != buf.len() {
        return Err(ProxyError::Invalid("bytes after the v1 line"));
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end])
        .map_err(|_| ProxyError::Invalid("v1 line is not ASCII"))?;
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or_default();
    if family == "UNKNOWN" {
        return Ok(Step::Done(ProxyHeader { source: None, len }));
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::Invalid("v1 line needs four fields"));
    };
    let ip: IpAddr = match family {
        "TCP4" => IpAddr::V4(parse_ip(src)?),
        "TCP6" => IpAddr::V6(parse_ip(src)?),
        _ => {
            return Err(ProxyError::Invalid(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let dst_ok = match family {
        "TCP4" => parse_ip::<Ipv4Addr>(dst).is_ok(),
        _ => parse_ip::<Ipv6Addr>(dst).is_ok(),
    };
    if !dst_ok || parse_port(dport).is_err() {
        return Err(ProxyError::Invalid("v1 destination is not valid"));
    }
    let port = parse_port(sport)?;
    Ok(Step::Done(ProxyHeader {
        source: Some(SocketAddr::new(ip, port)),
        len,
    }))
}

fn parse_ip<T: std::str::FromStr>(text: &str) -> Result<T, ProxyError> {
    text.parse()
        .map_err(|_| ProxyError::Invalid("v1 address is not valid"))
}

fn parse_port(text: &str) -> Result<u16, ProxyError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyError::Invalid("v1 port is not valid"));
    }
    text.parse()
        .map_err(|_| ProxyError::Invalid("v1 port is not valid"))
}

fn parse_v2(buf: &[u8]) -> Result<Step, ProxyError> {
    if buf.len() < 16 {
        return Ok(Step::More(16 - buf.len()));
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::Invalid("v2 version is not 2"));
    }
    let command = version_command & 0x0f;
    if command > 1 {
        return Err(ProxyError::Invalid("v2 command is not LOCAL or PROXY"));
    }
    let family = buf[13];
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(ProxyError::Invalid("v2 header too long"));
    }
    let len = 16 + payload;
    if buf.len() < len {
        return Ok(Step::More(len - buf.len()));
    }
    if buf.len() > len {
        return Err(ProxyError::Invalid("bytes after the v2 header"));
    }
    let body = &buf[16..];
    let source = match (command, family >> 4) {
        (0, _) => None,
        (_, 1) => {
            let addr = body
                .get(..12)
                .ok_or(ProxyError::Invalid("v2 IPv4 addresses too short"))?;
            let ip = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([addr[8], addr[9]]),
            ))
        }
        (_, 2) => {
            let addr = body
                .get(..36)
                .ok_or(ProxyError::Invalid("v2 IPv6 addresses too short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addr[..16]);
            let port = u16::from_be_bytes([addr[32], addr[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        (_, 0 | 3) => None,
        _ => return Err(ProxyError::Invalid("v2 address family unknown")),
    };
    Ok(Step::Done(ProxyHeader { source, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` the way the socket reader does; returns the header or the error.
    fn feed(input: &[u8]) -> Result<ProxyHeader, ProxyError> {
        let mut have = 0;
        for _ in 0..200 {
            match parse(&input[..have])? {
                Step::Done(header) => return Ok(header),
                Step::More(n) => {
                    assert!(n > 0);
                    if have + n > input.len() {
                        return Err(ProxyError::Invalid("input ended"));
                    }
                    have += n;
                }
            }
        }
        panic!("the parser did not finish");
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend((body.len() as u16).to_be_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let h = feed(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n").unwrap();
        assert_eq!(h.source, Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(h.len, 43);
        let h = feed(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n").unwrap();
        assert_eq!(h.source, Some("[2001:db8::1]:1".parse().unwrap()));
        let h = feed(b"PROXY UNKNOWN\r\n").unwrap();
        assert_eq!(
            h,
            ProxyHeader {
                source: None,
                len: 15
            }
        );
        let h = feed(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n").unwrap();
        assert_eq!(h.source, None);
    }

    #[test]
    fn v1_refusals() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n",
        ] {
            assert!(
                matches!(feed(bad), Err(ProxyError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert_eq!(
            feed(long.as_bytes()),
            Err(ProxyError::Invalid("v1 line too long"))
        );
        assert_eq!(feed(b"GET / HTTP/1.1\r\n\r\n"), Err(ProxyError::Missing));
        assert_eq!(
            feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03aaaaaa"),
            Err(ProxyError::Missing)
        );
    }

    #[test]
    fn v2_families_and_commands() {
        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1];
        body.extend(40000u16.to_be_bytes());
        body.extend(443u16.to_be_bytes());
        let mut with_tlv = body.clone();
        with_tlv.extend([0x04, 0x00, 0x01, 0xff]);
        let input = v2(1, 0x11, &with_tlv);
        let h = feed(&input).unwrap();
        assert_eq!(h.source, Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(h.len, input.len());

        let mut body6 = "2001:db8::5".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body6.extend([0u8; 16]);
        body6.extend(7u16.to_be_bytes());
        body6.extend(443u16.to_be_bytes());
        let h = feed(&v2(1, 0x21, &body6)).unwrap();
        assert_eq!(h.source, Some("[2001:db8::5]:7".parse().unwrap()));

        // LOCAL (health checks from the balancer itself) and unspecified families keep the peer.
        assert_eq!(feed(&v2(0, 0x00, &[])).unwrap().source, None);
        assert_eq!(feed(&v2(1, 0x00, &[])).unwrap().source, None);
    }

    #[test]
    fn v2_refusals() {
        let mut bad_version = v2(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        assert!(feed(&bad_version).is_err());
        assert!(feed(&v2(2, 0x11, &[0; 12])).is_err(), "unknown command");
        assert!(feed(&v2(1, 0x11, &[0; 4])).is_err(), "short addresses");
        assert!(feed(&v2(1, 0x41, &[0; 12])).is_err(), "unknown family");
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend([0x21, 0x11, 0xff, 0xff]);
        assert_eq!(feed(&huge), Err(ProxyError::Invalid("v2 header too long")));
    }

    #[test]
    fn never_asks_for_bytes_past_the_header() {
        // Every step's request stays within the header, for each prefix length.
        let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        for cut in 0..line.len() {
            if let Ok(Step::More(n)) = parse(&line[..cut]) {
                assert!(cut + n <= line.len(), "cut {cut} asked {n}");
            }
        }
        let header = v2(1, 0x11, &[1; 12]);
        for cut in 0..header.len() {
            if let Ok(Step::More(n)) = parse(&header[..cut]) {
                assert!(cut + n <= header.len(), "cut {cut} asked {n}");
            }
        }
    }
}
