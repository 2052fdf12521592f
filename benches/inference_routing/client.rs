//! The load generator's HTTP side: one streamed chat completion over a pooled keep-alive hyper
//! client, timed at the client (time to first content token, end), with the serving node read
//! from the simulator's `X-Sim-Node` header and the reply text kept for the chat's history.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Longest a single request may take before the client gives up on it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The whole stream arrived (`[DONE]`).
    Done,
    /// Refused before any token (429/503: queue full or wait expired).
    Rejected,
    /// Any other error status, or no response at all.
    Failed,
    /// The response began (200), then the stream broke.
    Cut,
}

/// What the client saw of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub http_status: u16,
    /// Time to the first content token.
    pub ttft: Option<Duration>,
    /// Time to the end of the response.
    pub elapsed: Duration,
    pub tokens: u32,
    /// The simulator that served it.
    pub node: Option<String>,
    pub reply: String,
}

/// Sends `body` to `addr`'s `/v1/chat/completions`, streams the answer and times it.
pub async fn chat(
    client: &HttpClient,
    addr: SocketAddr,
    body: Vec<u8>,
    chat_id: Option<&str>,
) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        status: Status::Failed,
        http_status: 0,
        ttft: None,
        elapsed: Duration::ZERO,
        tokens: 0,
        node: None,
        reply: String::new(),
    };
    let _ = tokio::time::timeout(
        REQUEST_TIMEOUT,
        run(client, addr, body, chat_id, started, &mut outcome),
    )
    .await;
    outcome.elapsed = started.elapsed();
    if outcome.status == Status::Failed && outcome.http_status == 200 {
        outcome.status = Status::Cut;
    }
    outcome
}

async fn run(
    client: &HttpClient,
    addr: SocketAddr,
    body: Vec<u8>,
    chat_id: Option<&str>,
    started: Instant,
    outcome: &mut Outcome,
) {
    let mut request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("host", "gpu.bench");
    if let Some(id) = chat_id {
        request = request.header("x-openwebui-chat-id", id);
    }
    let Ok(request) = request.body(Full::new(Bytes::from(body))) else {
        return;
    };
    let Ok(response) = client.request(request).await else {
        return;
    };
    outcome.http_status = response.status().as_u16();
    outcome.node = response
        .headers()
        .get("x-sim-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if matches!(outcome.http_status, 429 | 503) {
        outcome.status = Status::Rejected;
        return;
    }
    if outcome.http_status != 200 {
        return;
    }
    let mut body = response.into_body();
    let mut text = Vec::new();
    let mut scanned: usize = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return;
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        text.extend_from_slice(data);
        if outcome.ttft.is_none() {
            let from = scanned.saturating_sub(CONTENT_KEY.len() + 1);
            if first_content(&text[from..]).is_some() {
                outcome.ttft = Some(started.elapsed());
            }
            scanned = text.len();
        }
    }
    let text = String::from_utf8_lossy(&text);
    if !text.contains("data: [DONE]") {
        return;
    }
    outcome.status = Status::Done;
    for piece in contents(&text) {
        outcome.tokens += 1;
        outcome.reply.push_str(piece);
    }
}

const CONTENT_KEY: &[u8] = br#""content":""#;

/// Position of the first non-empty `"content":"…"` in `bytes`.
fn first_content(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(CONTENT_KEY.len() + 1)
        .position(|w| w.starts_with(CONTENT_KEY) && w[CONTENT_KEY.len()] != b'"')
}

/// The non-empty `content` strings of the SSE chunks (the simulator's tokens carry no quotes or
/// escapes).
fn contents(text: &str) -> impl Iterator<Item = &str> {
    text.split(r#""content":""#).skip(1).filter_map(|rest| {
        let end = rest.find('"')?;
        (end > 0).then(|| &rest[..end])
    })
}
