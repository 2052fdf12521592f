//! DNS on the wire: one message to one server over UDP (TCP when the answer is truncated), plain
//! queries, and the system's recursive resolvers from /etc/resolv.conf.

use std::net::SocketAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::DEFAULT_QUERY_TIMEOUT;

/// Sends `bytes` (an encoded message with id `id`) to `server` and returns the decoded answer.
pub async fn exchange(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, String> {
    let answer = tokio::time::timeout(DEFAULT_QUERY_TIMEOUT, exchange_udp(server, bytes, id))
        .await
        .map_err(|_| format!("no answer from {server} within {DEFAULT_QUERY_TIMEOUT:?}"))??;
    if !answer.truncated() {
        return Ok(answer);
    }
    tokio::time::timeout(DEFAULT_QUERY_TIMEOUT, exchange_tcp(server, bytes))
        .await
        .map_err(|_| format!("no TCP answer from {server} within {DEFAULT_QUERY_TIMEOUT:?}"))?
}

async fn exchange_udp(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, String> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("udp socket: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("udp connect {server}: {e}"))?;
    socket
        .send(bytes)
        .await
        .map_err(|e| format!("udp send to {server}: {e}"))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        let read = socket
            .recv(&mut buffer)
            .await
            .map_err(|e| format!("udp receive from {server}: {e}"))?;
        match Message::from_vec(&buffer[..read]) {
            Ok(message) if message.id() == id => return Ok(message),
            // A stray or late datagram: keep waiting for ours.
            _ => continue,
        }
    }
}

async fn exchange_tcp(server: SocketAddr, bytes: &[u8]) -> Result<Message, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| format!("tcp connect {server}: {e}"))?;
    let length = u16::try_from(bytes.len()).map_err(|_| "message too long".to_string())?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| format!("tcp send to {server}: {e}"))?;
    let length = stream
        .read_u16()
        .await
        .map_err(|e| format!("tcp receive from {server}: {e}"))?;
    let mut buffer = vec![0u8; usize::from(length)];
    stream
        .read_exact(&mut buffer)
        .await
        .map_err(|e| format!("tcp receive from {server}: {e}"))?;
    Message::from_vec(&buffer).map_err(|e| format!("bad answer from {server}: {e}"))
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
) -> Result<Message, String> {
    let mut message = Message::new();
    let id = random_id();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(recursive)
        .add_query(Query::query(name.clone(), record_type));
    let bytes = message.to_vec().map_err(|e| format!("encode query: {e}"))?;
    let answer = exchange(server, &bytes, id).await?;
    match answer.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer),
        code => Err(format!("{server} answered {code} for {name} {record_type}")),
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
pub fn name(text: &str) -> Result<Name, String> {
    let absolute = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_ascii(&absolute).map_err(|e| format!("invalid DNS name `{text}`: {e}"))
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
