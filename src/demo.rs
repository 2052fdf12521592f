//! The built-in demo: the bundled `conf/demo.yaml` and a tiny backend (an HTML page echoing the
//! forwarded headers, an SSE clock at `/events` and a WebSocket echo at `/ws`) so that
//! `ferrogate demo` shows TLS, routing, streaming and upgrades on one machine without root. It
//! reads request bodies to their end (uploads report their size); HTTP/1.1 itself is hyper's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{self, model::Config};
use ferrogate_sim::http::{respond, Body};

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
                let config = ferrogate_sim::SimConfig {
                    models: models.iter().map(|m| m.to_string()).collect(),
                    decode_ms: 30.0,
                    ..ferrogate_sim::SimConfig::default()
                };
                let started = match TcpListener::bind(address).await {
                    Ok(listener) => ferrogate_sim::serve(listener, config).await,
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

/// Plain HTTP/1.1 on hyper: keep-alive, pipelining and request bodies (read to their end before
/// the answer, so uploads through the proxy are timed by when the backend has them all).
async fn plain_http(stream: TcpStream) -> std::io::Result<()> {
    let service = hyper::service::service_fn(|req| async move {
        Ok::<_, std::convert::Infallible>(answer(req).await)
    });
    hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await
        .map_err(std::io::Error::other)
}

async fn answer(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path.starts_with("/events") {
        return sse_clock();
    }
    let head = head_text(&req);
    let has_body = !req.body().is_end_stream();
    let text = if has_body {
        let mut body = req.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => received += frame.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => {
                    return respond(
                        StatusCode::BAD_REQUEST,
                        TEXT,
                        format!("bad request body: {e}\n"),
                    )
                }
            }
        }
        format!("demo backend: {path}: received {received} bytes\n")
    } else if path == "/" {
        return respond(StatusCode::OK, HTML, page(&head));
    } else {
        format!("demo backend: {path}\n")
    };
    respond(StatusCode::OK, TEXT, text)
}

/// The request line and headers as the backend received them (names as hyper gives them).
fn head_text(req: &Request<Incoming>) -> String {
    let mut head = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (name, value) in req.headers() {
        head.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    head
}

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// `SSE_EVENTS` events, one a second, each sent as it is made.
fn sse_clock() -> Response<Body> {
    let ticks = futures_util::stream::unfold(0u32, |i| async move {
        if i >= SSE_EVENTS {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let event = Bytes::from(format!("data: tick {i}\n\n"));
        Some((Ok::<_, std::io::Error>(Frame::data(event)), i + 1))
    });
    let mut response = Response::new(StreamBody::new(ticks).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The demo backend on an ephemeral loopback port.
    async fn start() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream));
            }
        });
        addr
    }

    /// Reads from `stream` until what arrived contains `needle`; returns all of it.
    async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
        let mut seen = String::new();
        let mut chunk = [0u8; 4096];
        while !seen.contains(needle) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in time: {seen}"))
                .expect("read");
            assert!(n > 0, "closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        seen
    }

    #[tokio::test]
    async fn the_backend_reads_bodies_and_keeps_the_connection() {
        let mut client = TcpStream::connect(start().await).await.expect("connect");
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
        let seen = read_until(&mut client, "demo backend: /after").await;
        assert!(
            seen.contains("demo backend: /upload: received 100000 bytes"),
            "{seen}"
        );
        assert!(
            seen.contains("demo backend: /up2: received 11 bytes"),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn the_page_shows_the_request_and_events_stream() {
        let addr = start().await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut page = String::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut page))
            .await
            .expect("page in time")
            .expect("read");
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("text/html"), "{page}");
        assert!(page.contains("x-forwarded-for: 203.0.113.9"), "{page}");

        let mut events = TcpStream::connect(addr).await.expect("connect");
        events
            .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let seen = read_until(&mut events, "data: tick 0").await;
        assert!(seen.contains("text/event-stream"), "{seen}");
    }
}
