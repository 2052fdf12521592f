//! The built-in demo: the bundled `conf/demo.yaml` and a tiny backend (an HTML page echoing the
//! forwarded headers, an SSE clock at `/events` and a WebSocket echo at `/ws`) so that
//! `ferrogate demo` shows TLS, routing, streaming and upgrades on one machine without root.

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
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = find_head_end(&buf) else {
            if buf.len() > 64 * 1024 {
                return Ok(());
            }
            continue;
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
        let body = if path == "/" || path.starts_with("/?") {
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
