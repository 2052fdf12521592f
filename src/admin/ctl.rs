//! `ferrogate ctl`: a small blocking HTTP/1.1 client of a running daemon's runtime API
//! (`/servers`), printing a table of the servers, or the one server a change touched.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// How long `ctl` waits for the daemon.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer `ctl` reads.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// What `ctl` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlCommand {
    /// Every server of every upstream.
    Servers,
    /// Sets a server's admin state (`ready`, `drain`, `maint`).
    State {
        upstream: String,
        address: String,
        state: &'static str,
    },
    /// Sets a server's runtime weight.
    Weight {
        upstream: String,
        address: String,
        weight: u32,
    },
}

/// Runs `command` against the admin listener at `admin` and returns what to print.
pub fn run(admin: &str, command: &CtlCommand) -> Result<String, String> {
    match command {
        CtlCommand::Servers => {
            let body = exchange(admin, "GET", "/servers", "")?;
            let doc: ServersDoc =
                serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))?;
            let servers: Vec<ServerRow> =
                doc.upstreams.into_iter().flat_map(|u| u.servers).collect();
            Ok(table(&servers, now_ms()))
        }
        CtlCommand::State {
            upstream,
            address,
            state,
        } => change(admin, upstream, address, "state", state),
        CtlCommand::Weight {
            upstream,
            address,
            weight,
        } => change(admin, upstream, address, "weight", &weight.to_string()),
    }
}

fn change(
    admin: &str,
    upstream: &str,
    address: &str,
    setting: &str,
    value: &str,
) -> Result<String, String> {
    let path = format!(
        "/servers/{}/{}/{setting}",
        percent_encode(upstream),
        percent_encode(address)
    );
    let body = exchange(admin, "POST", &path, value)?;
    let row: ServerRow =
        serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))?;
    Ok(table(&[row], now_ms()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything but unreserved characters as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One request on a new connection; the body of a 200 answer, else an error naming the status
/// and what the daemon said.
fn exchange(admin: &str, method: &str, path: &str, body: &str) -> Result<String, String> {
    let address = admin
        .to_socket_addrs()
        .map_err(|e| format!("{admin}: {e}"))?
        .next()
        .ok_or_else(|| format!("{admin}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, CTL_TIMEOUT)
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(CTL_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let (status, answer) = read_answer(&mut stream)?;
    if status == 200 {
        Ok(answer)
    } else {
        Err(format!("{status}: {}", answer.trim_end()))
    }
}

/// Status and body of an HTTP/1.1 answer (Content-Length, or up to the end of the stream).
fn read_answer(stream: &mut impl Read) -> Result<(u16, String), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut head_end = None;
    let mut length = None;
    loop {
        if head_end.is_none() {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok());
                head_end = Some(end + 4);
            }
        }
        if let (Some(start), Some(length)) = (head_end, length) {
            if buf.len() >= start + length {
                buf.truncate(start + length);
                break;
            }
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_ANSWER {
            return Err("the answer is too large".into());
        }
    }
    let start = head_end.ok_or("no HTTP answer")?;
    let head = String::from_utf8_lossy(&buf[..start]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no HTTP status")?;
    Ok((status, String::from_utf8_lossy(&buf[start..]).into_owned()))
}

#[derive(Debug, Deserialize)]
struct ServersDoc {
    upstreams: Vec<UpstreamRows>,
}

#[derive(Debug, Deserialize)]
struct UpstreamRows {
    servers: Vec<ServerRow>,
}

/// A server as `GET /servers` and a change answer it.
#[derive(Debug, Deserialize)]
struct ServerRow {
    upstream: String,
    address: String,
    weight: u32,
    runtime_weight: Option<u32>,
    admin_state: String,
    #[serde(default)]
    drain_configured: bool,
    health: String,
    inflight: u32,
    sticky_entries: u64,
    changed: Option<ChangeRow>,
}

#[derive(Debug, Deserialize)]
struct ChangeRow {
    at_unix_ms: u64,
    by: String,
    what: String,
}

/// `12s`, `5m`, `3h`, `2d`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The rows as an aligned text table with a header line.
fn table(rows: &[ServerRow], now_ms: u64) -> String {
    let header = [
        "UPSTREAM",
        "ADDRESS",
        "STATE",
        "HEALTH",
        "WEIGHT",
        "IN-FLIGHT",
        "STICKY",
        "CHANGED",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let state = if r.drain_configured && r.admin_state == "ready" {
            "drain (file)".to_string()
        } else {
            r.admin_state.clone()
        };
        let weight = match r.runtime_weight {
            Some(runtime) => format!("{runtime} (file {})", r.weight),
            None => r.weight.to_string(),
        };
        let changed = r.changed.as_ref().map_or_else(
            || "-".to_string(),
            |c| {
                format!(
                    "{} by {}, {} ago",
                    c.what,
                    c.by,
                    age(now_ms.saturating_sub(c.at_unix_ms))
                )
            },
        );
        lines.push(vec![
            r.upstream.clone(),
            r.address.clone(),
            state,
            r.health.clone(),
            weight,
            r.inflight.to_string(),
            r.sticky_entries.to_string(),
            changed,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn addresses_are_encoded_for_the_path() {
        assert_eq!(percent_encode("10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(percent_encode("[::1]:80"), "%5B::1%5D:80");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn the_table_aligns_and_says_what_changed() {
        let rows = vec![
            ServerRow {
                upstream: "owui".into(),
                address: "10.0.0.11:8080".into(),
                weight: 1,
                runtime_weight: Some(5),
                admin_state: "drain".into(),
                drain_configured: false,
                health: "up".into(),
                inflight: 2,
                sticky_entries: 1,
                changed: Some(ChangeRow {
                    at_unix_ms: 1_000,
                    by: "127.0.0.1:5000".into(),
                    what: "weight 5".into(),
                }),
            },
            ServerRow {
                upstream: "owui".into(),
                address: "10.0.0.12:8080".into(),
                weight: 2,
                runtime_weight: None,
                admin_state: "ready".into(),
                drain_configured: true,
                health: "down".into(),
                inflight: 0,
                sticky_entries: 0,
                changed: None,
            },
        ];
        let text = table(&rows, 61_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("UPSTREAM  ADDRESS         STATE"),
            "{text}"
        );
        assert!(
            lines[1].contains("drain         up      5 (file 1)  2          1       weight 5 by 127.0.0.1:5000, 60s ago"),
            "{text}"
        );
        assert!(lines[2].contains("drain (file)  down    2"), "{text}");
        assert!(lines[2].ends_with('-'), "{text}");
    }

    #[test]
    fn errors_carry_the_status_and_the_daemons_words() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).expect("read");
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let body = "no upstream x\n";
            let answer = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).expect("answer");
            request
        });
        let command = CtlCommand::State {
            upstream: "x".into(),
            address: "[::1]:80".into(),
            state: "drain",
        };
        assert_eq!(run(&address, &command), Err("404: no upstream x".into()));
        let request = server.join().expect("server");
        assert!(
            request.starts_with("POST /servers/x/%5B::1%5D:80/state HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\ndrain"), "{request}");
        assert!(run("127.0.0.1:1", &CtlCommand::Servers).is_err());
    }
}
