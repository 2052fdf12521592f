//! The built-in demo: the bundled `conf/demo.yaml` and a tiny backend (an HTML page echoing the
//! forwarded headers, an SSE clock at `/events` and a WebSocket echo at `/ws`) so that
//! `ferrogate demo` shows TLS, routing, streaming and upgrades on one machine without root. It
//! reads request bodies to their end (uploads report their size).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{self, model::Config};

/// The demo configuration shipped in the binary.
pub const DEMO_CONFIG: &str = include_str!("../conf/demo.yaml");
/// Where the demo backend listens (the address `conf/demo.yaml` routes to).
pub const DEMO_BACKEND_ADDRESS: &str = "127.0.0.1:18080";
/// Where the demo's simulated GPU nodes listen (the `gpu` upstream of `conf/demo.yaml`), and the
/// models each serves.
pub const DEMO_GPU_NODES: [(&str, &[&str]); 2] = [
    ("127.0.0.1:18091", &["demo-llama"]),
    ("127.0.0.1:18092", &["demo-llama", "demo-qwen"]),
];
/// SSE events sent per `/events` request.
const SSE_EVENTS: u32 = 60;

/// Name of the demo's configuration file inside its state directory.
pub const DEMO_CONFIG_FILE: &str = "ferrogate-demo.yaml";

/// Writes the demo configuration into `state_dir` (only when missing, so edits survive and are
/// picked up by hot reload) and loads it. Returns the file's path and the configuration.
pub fn prepare(state_dir: &Path) -> Result<(PathBuf, Config), String> {
    let state_dir = absolute(state_dir);
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    let path = state_dir.join(DEMO_CONFIG_FILE);
    if !path.exists() {
        // Inside the state directory the file's own directory is the state directory.
        let text = DEMO_CONFIG.replacen("state_dir: .ferrogate-demo", "state_dir: .", 1);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let loaded = config::load(&path).map_err(|errors| {
        format!(
            "demo configuration {} is invalid:\n{errors}",
            path.display()
        )
    })?;
    Ok((path, loaded))
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Tells the person running the demo where to point a browser.
pub fn print_banner(path: &Path, config: &Config) {
    for listener in &config.listeners {
        let scheme = if listener.tls { "https" } else { "http" };
        eprintln!(
            "ferrogate demo: {scheme}://localhost:{}/  ({} listener)",
            listener.address.port(),
            listener.name
        );
    }
    eprintln!(
        "ferrogate demo: self-signed certificate in {}/selfsigned (your browser will warn once)",
        config.state_dir.display()
    );
    eprintln!(
        "ferrogate demo: configuration {}: edit it and the change is applied without restart",
        path.display()
    );
}

/// Starts the demo backend on its own thread and runtime.
pub fn spawn_backend(address: &'static str) {
    std::thread::spawn(move || {
        if let Err(message) = serve_backend_blocking(address) {
            tracing::error!("demo backend: {message}");
        }
    });
}

/// Starts the demo's simulated GPU nodes on their own thread and runtime.
pub fn spawn_gpu_nodes() {
    std::thread::spawn(|| {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "demo GPU nodes: cannot start a runtime");
                return;
            }
        };
        runtime.block_on(async {
            let mut nodes = Vec::new();
            for (address, models) in DEMO_GPU_NODES {
                let config = crate::sim::SimConfig {
                    models: models.iter().map(|m| m.to_string()).collect(),
                    decode_ms: 30.0,
                    ..crate::sim::SimConfig::default()
                };
                let started = match TcpListener::bind(address).await {
                    Ok(listener) => crate::sim::serve(listener, config).await,
                    Err(e) => Err(e),
                };
                match started {
                    Ok(node) => nodes.push(node),
                    Err(e) => tracing::error!(%address, error = %e, "demo GPU node not started"),
                }
            }
            std::future::pending::<()>().await;
            drop(nodes);
        });
    });
}

/// Runs the demo backend until the process ends.
pub fn serve_backend_blocking(address: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        tracing::info!(%address, "demo backend listening");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "demo backend accept failed");
                    continue;
                }
            };
            tokio::spawn(async move {
                if let Err(e) = handle(stream).await {
                    tracing::debug!(error = %e, "demo backend connection ended");
                }
            });
        }
    })
}

async fn handle(stream: TcpStream) -> std::io::Result<()> {
    let mut peek = [0u8; 2048];
    let n = stream.peek(&mut peek).await?;
    let head = String::from_utf8_lossy(&peek[..n]).to_ascii_lowercase();
    if head.contains("upgrade: websocket") {
        return websocket_echo(stream).await;
    }
    plain_http(stream).await
}

async fn websocket_echo(stream: TcpStream) -> std::io::Result<()> {
    let mut ws = tokio_tungstenite::accept_async(stream)
        .await
        .map_err(std::io::Error::other)?;
    while let Some(message) = ws.next().await {
        let message = message.map_err(std::io::Error::other)?;
        if message.is_text() || message.is_binary() {
            ws.send(message).await.map_err(std::io::Error::other)?;
        }
    }
    Ok(())
}

async fn plain_http(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        // A pipelined request may already be in the buffer, read along with the previous one.
        let end = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() > 64 * 1024 {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let path = head
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_string();
        if path.starts_with("/events") {
            return sse_clock(stream).await;
        }
        // A request body is read to its end before the answer (uploads through the proxy are
        // timed by when the backend has them all), and a keep-alive connection's next request
        // starts after it.
        let framing = match body_framing(&head) {
            Ok(framing) => framing,
            Err(message) => {
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}\n",
                    message.len() + 1
                );
                return stream.write_all(response.as_bytes()).await;
            }
        };
        let received = {
            let mut body = BodyReader {
                stream: &mut stream,
                buf: &mut buf,
            };
            match framing {
                BodyFraming::None => None,
                BodyFraming::Length(n) => Some(body.skip(n).await?),
                BodyFraming::Chunked => Some(body.skip_chunked().await?),
            }
        };
        let body = if let Some(n) = received {
            format!("demo backend: {path}: received {n} bytes\n")
        } else if path == "/" || path.starts_with("/?") {
            page(&head)
        } else {
            format!("demo backend: {path}\n")
        };
        let content_type = if body.starts_with("<!doctype") {
            "text/html; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
}

/// How a request's body is delimited (RFC 9112 §6): chunked wins over a length.
#[derive(Debug, PartialEq, Eq)]
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

fn body_framing(head: &str) -> Result<BodyFraming, String> {
    let mut length = None;
    let mut chunked = false;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= value
                .split(',')
                .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| format!("bad content-length {value:?}"))?;
            if length.is_some_and(|earlier| earlier != n) {
                return Err("conflicting content-length headers".into());
            }
            length = Some(n);
        }
    }
    Ok(match (chunked, length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(0)) | (false, None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    })
}

/// The size in a chunk-size line (`1a2b;ext=1`), hexadecimal.
fn chunk_size(line: &str) -> Option<u64> {
    let digits = line.split(';').next()?.trim();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Reads and discards a request body: bytes already read past the head first, then the socket.
/// Bytes past the body stay in `buf` for the next request.
struct BodyReader<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut Vec<u8>,
}

impl BodyReader<'_> {
    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Discards `n` bytes; returns `n`.
    async fn skip(&mut self, n: u64) -> std::io::Result<u64> {
        let mut left = n;
        loop {
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            self.buf.drain(..take);
            left -= take as u64;
            if left == 0 {
                return Ok(n);
            }
            self.fill().await?;
        }
    }

    /// One CRLF-terminated line, without the CRLF (at most 4 KiB).
    async fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "chunk line too long",
                ));
            }
            self.fill().await?;
        }
    }

    /// Discards a chunked body and its trailers; returns the data bytes.
    async fn skip_chunked(&mut self) -> std::io::Result<u64> {
        let mut total = 0;
        loop {
            let line = self.line().await?;
            let size = chunk_size(&line).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if size == 0 {
                while !self.line().await?.is_empty() {}
                return Ok(total);
            }
            total += self.skip(size).await?;
            if !self.line().await?.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "chunk data not followed by CRLF",
                ));
            }
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

async fn sse_clock(mut stream: TcpStream) -> std::io::Result<()> {
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
        .await?;
    for i in 0..SSE_EVENTS {
        let event = format!("data: tick {i}\n\n");
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        stream.write_all(chunk.as_bytes()).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stream.write_all(b"0\r\n\r\n").await
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn page(head: &str) -> String {
    let headers = escape(head);
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>ferrogate demo</title>
<style>body{{font-family:sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}}
pre{{background:#f4f4f4;padding:1rem;overflow:auto}}</style></head>
<body><h1>ferrogate demo backend</h1>
<p>This page came through ferrogate. The request as the backend received it:</p>
<pre>{headers}</pre>
<h2>Server-sent events (one per second, streamed unbuffered)</h2><pre id="sse"></pre>
<h2>WebSocket echo</h2><pre id="ws"></pre>
<script>
const sse = new EventSource('/events');
sse.onmessage = (e) => {{ document.getElementById('sse').textContent = e.data; }};
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
let n = 0;
ws.onopen = () => setInterval(() => ws.send('ping ' + (n++)), 1000);
ws.onmessage = (e) => {{ document.getElementById('ws').textContent = 'echoed: ' + e.data; }};
</script></body></html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_framing_follows_the_headers() {
        let head = |extra: &str| format!("POST /upload HTTP/1.1\r\nHost: x\r\n{extra}");
        assert_eq!(body_framing(&head("")), Ok(BodyFraming::None));
        assert_eq!(
            body_framing(&head("Content-Length: 0")),
            Ok(BodyFraming::None)
        );
        assert_eq!(
            body_framing(&head("content-length:  8388608 ")),
            Ok(BodyFraming::Length(8_388_608))
        );
        assert_eq!(
            body_framing(&head(
                "Transfer-Encoding: gzip, Chunked\r\nContent-Length: 5"
            )),
            Ok(BodyFraming::Chunked)
        );
        assert!(body_framing(&head("Content-Length: 5\r\nContent-Length: 6")).is_err());
        assert!(body_framing(&head("Content-Length: -1")).is_err());
    }

    #[test]
    fn chunk_sizes_are_hex_with_optional_extensions() {
        assert_eq!(chunk_size("0"), Some(0));
        assert_eq!(chunk_size("1A2b"), Some(0x1a2b));
        assert_eq!(chunk_size("10;name=value"), Some(16));
        assert_eq!(chunk_size(""), None);
        assert_eq!(chunk_size("xyz"), None);
        assert_eq!(chunk_size("1000000000000000"), None);
    }

    #[tokio::test]
    async fn the_backend_reads_bodies_and_keeps_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let _ = handle(stream).await;
        });
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let body = vec![b'x'; 100_000];
        let mut request = format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request.extend_from_slice(
            b"POST /up2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nTrailer: 1\r\n\r\n\
              GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        client.write_all(&request).await.expect("write");
        let mut seen = String::new();
        let mut chunk = [0u8; 4096];
        while !seen.contains("demo backend: /after") {
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk))
                .await
                .expect("answers in time")
                .expect("read");
            assert!(n > 0, "closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        assert!(
            seen.contains("demo backend: /upload: received 100000 bytes"),
            "{seen}"
        );
        assert!(
            seen.contains("demo backend: /up2: received 11 bytes"),
            "{seen}"
        );
    }
}
