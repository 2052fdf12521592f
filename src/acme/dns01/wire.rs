//! DNS on the wire: one message to one server over UDP (TCP when the answer is truncated), plain
//! queries, and the system's recursive resolvers from /etc/resolv.conf.

use std::net::SocketAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{DnsError, DEFAULT_QUERY_TIMEOUT};

/// Sends `bytes` (an encoded message with id `id`) to `server` and returns the decoded answer.
pub async fn exchange(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, DnsError> {
    let answer = tokio::time::timeout(DEFAULT_QUERY_TIMEOUT, exchange_udp(server, bytes, id))
        .await
        .map_err(|_| DnsError::Timeout {
            what: format!("no answer from {server}"),
            after: DEFAULT_QUERY_TIMEOUT,
        })??;
    if !answer.truncated() {
        return Ok(answer);
    }
    tokio::time::timeout(DEFAULT_QUERY_TIMEOUT, exchange_tcp(server, bytes))
        .await
        .map_err(|_| DnsError::Timeout {
            what: format!("no TCP answer from {server}"),
            after: DEFAULT_QUERY_TIMEOUT,
        })?
}

/// The error of a socket step (`what`: `udp send to 10.0.0.53:53`, …).
fn io(what: String) -> impl FnOnce(std::io::Error) -> DnsError {
    move |source| DnsError::Io { what, source }
}

async fn exchange_udp(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, DnsError> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(io("udp socket".into()))?;
    socket
        .connect(server)
        .await
        .map_err(io(format!("udp connect {server}")))?;
    socket
        .send(bytes)
        .await
        .map_err(io(format!("udp send to {server}")))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        let read = socket
            .recv(&mut buffer)
            .await
            .map_err(io(format!("udp receive from {server}")))?;
        match Message::from_vec(&buffer[..read]) {
            Ok(message) if message.id() == id => return Ok(message),
            // A stray or late datagram: keep waiting for ours.
            _ => continue,
        }
    }
}

async fn exchange_tcp(server: SocketAddr, bytes: &[u8]) -> Result<Message, DnsError> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(io(format!("tcp connect {server}")))?;
    let length = u16::try_from(bytes.len()).map_err(|_| DnsError::TooLong)?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream
        .write_all(&framed)
        .await
        .map_err(io(format!("tcp send to {server}")))?;
    let length = stream
        .read_u16()
        .await
        .map_err(io(format!("tcp receive from {server}")))?;
    let mut buffer = vec![0u8; usize::from(length)];
    stream
        .read_exact(&mut buffer)
        .await
        .map_err(io(format!("tcp receive from {server}")))?;
    Message::from_vec(&buffer).map_err(|source| DnsError::BadAnswer { server, source })
}

/// A random message id.
pub fn random_id() -> u16 {
    (crate::acme::schedule::random_below(u64::from(u16::MAX) + 1)) as u16
}

/// Asks `server` for `name`/`record_type`; `recursive` sets RD (for resolvers).
pub async fn query(
    server: SocketAddr,
    name: &Name,
    record_type: RecordType,
    recursive: bool,
) -> Result<Message, DnsError> {
    let mut message = Message::new();
    let id = random_id();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(recursive)
        .add_query(Query::query(name.clone(), record_type));
    let bytes = message.to_vec().map_err(|source| DnsError::Encode {
        what: "encode query",
        source,
    })?;
    let answer = exchange(server, &bytes, id).await?;
    match answer.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer),
        code => Err(DnsError::Rcode {
            server,
            name: name.to_string(),
            record_type,
            code,
        }),
    }
}

/// The TXT strings at `name` in an answer (each record's strings joined).
pub fn txt_values(answer: &Message, name: &Name) -> Vec<String> {
    answer
        .answers()
        .iter()
        .filter(|record| record.name().to_lowercase() == name.to_lowercase())
        .filter_map(|record| match record.data() {
            RData::TXT(txt) => Some(
                txt.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

/// The `nameserver` lines of /etc/resolv.conf, on port 53.
pub fn system_resolvers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    parse_resolv_conf(&text)
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| {
            rest.trim()
                .split('%')
                .next()?
                .parse::<std::net::IpAddr>()
                .ok()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Parses an absolute name (a trailing dot is added when missing).
pub fn name(text: &str) -> Result<Name, DnsError> {
    let absolute = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_ascii(&absolute).map_err(|source| DnsError::InvalidName {
        name: text.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# c\nsearch x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1\noptions ndots:1\n";
        let servers = parse_resolv_conf(text);
        assert_eq!(
            servers,
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn names_are_absolute() {
        assert_eq!(name("a.example.com").unwrap().to_string(), "a.example.com.");
        assert_eq!(
            name("a.example.com.").unwrap().to_string(),
            "a.example.com."
        );
    }
}
