//! Real backend servers on 127.0.0.1:0 for the daemon to proxy to: an HTTP/1.1 echo server that
//! logs every request it receives, a WebSocket echo, a chunked SSE source, a silent server that
//! never answers, and a port nobody listens on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head a backend reads.
const MAX_HEAD_BYTES: usize = 1024 * 1024;

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    (listener, addr)
}

/// A request as a backend received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    /// Names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// Every value of a header (name case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The only value of a header; panics when it appears more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.header_all(name);
        assert!(all.len() <= 1, "header {name} appears {} times", all.len());
        all.first().copied()
    }
}

/// Reads one request head and body; `None` on a clean EOF before a request.
pub async fn read_request<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<RecordedRequest>> {
    let mut line = Vec::new();
    // Request line (skipping stray empty lines between keep-alive requests).
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line != b"\r\n" && line != b"\n" {
            break;
        }
    }
    let request_line = String::from_utf8_lossy(&line).trim_end().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    let mut total = line.len();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        total += n;
        if total > MAX_HEAD_BYTES {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        if let Some((n, v)) = text.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut req = RecordedRequest {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header_all("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            reader.read_until(b'\n', &mut line).await?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.trim().split(';').next().unwrap_or("").to_string();
            let size = usize::from_str_radix(&size_text, 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).await? <= 2 {
                        break;
                    }
                }
                break;
            }
            let mut data = vec![0u8; size + 2];
            reader.read_exact(&mut data).await?;
            req.body.extend_from_slice(&data[..size]);
        }
    } else if let Some(len) = req.header_all("content-length").first() {
        let len: usize = len
            .parse()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        let mut data = vec![0u8; len];
        reader.read_exact(&mut data).await?;
        req.body = data;
    }
    Ok(Some(req))
}

/// An HTTP/1.1 echo server: answers every request 200 with `X-Backend: NAME` and a plain-text
/// body listing the backend name, method, target and every request header; logs each request.
#[derive(Clone)]
pub struct EchoBackend {
    pub addr: SocketAddr,
    pub name: String,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl EchoBackend {
    pub async fn start(name: &str) -> Self {
        let (listener, addr) = bind().await;
        let backend = Self {
            addr,
            name: name.to_string(),
            log: Arc::new(Mutex::new(Vec::new())),
        };
        let server = backend.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.serve(stream).await;
                });
            }
        });
        backend
    }

    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        while let Some(req) = read_request(&mut reader).await? {
            let mut body = format!(
                "backend: {}\nmethod: {}\ntarget: {}\n",
                self.name, req.method, req.target
            );
            for (n, v) in &req.headers {
                body.push_str(&format!("header: {n}: {v}\n"));
            }
            let close = req
                .header_all("connection")
                .iter()
                .any(|v| v.eq_ignore_ascii_case("close"));
            self.log.lock().expect("log lock").push(req);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: {}\r\n{}\r\n",
                body.len(),
                self.name,
                if close { "Connection: close\r\n" } else { "" }
            );
            write.write_all(head.as_bytes()).await?;
            write.write_all(body.as_bytes()).await?;
            write.flush().await?;
            if close {
                break;
            }
        }
        Ok(())
    }

    /// How many requests reached this backend.
    pub fn count(&self) -> usize {
        self.log.lock().expect("log lock").len()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.lock().expect("log lock").clone()
    }

    /// The most recent request; panics when there was none.
    pub fn last(&self) -> RecordedRequest {
        self.requests()
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("backend {} received no request", self.name))
    }
}

/// A WebSocket echo server: every text or binary message comes back unchanged.
pub async fn websocket_echo() -> SocketAddr {
    let (listener, addr) = bind().await;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    } else if msg.is_close() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// An SSE source: answers any request with a chunked `text/event-stream` of `events` events
/// (`data: 0` .. `data: N-1`), one chunk each, `interval` apart, then ends the body.
pub async fn sse_server(events: usize, interval: Duration) -> SocketAddr {
    let (listener, addr) = bind().await;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let Ok(Some(_)) = read_request(&mut reader).await else {
                    return;
                };
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
                if write.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for n in 0..events {
                    let event = format!("data: {n}\n\n");
                    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                    if write.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = write.flush().await;
                    tokio::time::sleep(interval).await;
                }
                let _ = write.write_all(b"0\r\n\r\n").await;
                let _ = write.flush().await;
            });
        }
    });
    addr
}

/// A server that accepts connections, reads whatever is sent, and never answers.
pub async fn silent_server() -> SocketAddr {
    let (listener, addr) = bind().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A server that answers every request with `200 slow` after `delay` (one request per
/// connection).
pub async fn slow_server(delay: Duration) -> SocketAddr {
    let (listener, addr) = bind().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while crate::client::head_end(&buf).is_none() {
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nslow\n",
                    )
                    .await;
            });
        }
    });
    addr
}

/// A loopback port with nothing listening for as long as this lives: a socket bound to it
/// without listening (connections are refused) and without SO_REUSEADDR (nobody else can bind
/// it, so it stays closed while tests run in parallel).
pub struct ClosedPort {
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

/// A [`ClosedPort`]; keep it alive while the port must stay closed.
pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    ClosedPort {
        addr: socket.local_addr().expect("local_addr"),
        _socket: socket,
    }
}
