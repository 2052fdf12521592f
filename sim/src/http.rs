//! The node's HTTP surface: one hyper service routing the OpenAI endpoints (`/v1/models`,
//! `/v1/chat/completions`, `/v1/completions`), `/health`, `/metrics`, the engine endpoints
//! routers call ([`engine_api`]: `/tokenize`, render, SGLang's info), and the simulator's own
//! `/sim/stats` and `/sim/faults`. Every refusal is an OpenAI error JSON.

mod engine_api;

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};

use super::errors::{bad_body, injected_error, invalid_request, model_not_found, overloaded};
use super::faults::Faults;
use super::generate::Generation;
use super::metrics::{render, MetricsInput};
use super::node::Node;
use super::request::{parse_completion, Endpoint};
use super::tokenizer::MAX_MODEL_LEN;

/// Largest request body read.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The response header naming the node that served a completion (its bound address).
pub const SIM_NODE_HEADER: &str = "x-sim-node";
/// `Retry-After` seconds on a 503.
const RETRY_AFTER_SECS: &str = "1";

/// Every response body the node sends.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A whole answer with its status and content type (the demo backend answers this way too).
pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "application/json", body)
}

fn unavailable(body: String) -> Response<Body> {
    let mut response = json(StatusCode::SERVICE_UNAVAILABLE, body);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
}

fn invalid(message: &str) -> Response<Body> {
    json(StatusCode::BAD_REQUEST, invalid_request(message))
}

/// Serves one request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let response = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/models") => json(StatusCode::OK, models_body(&node)),
        (Method::POST, "/v1/chat/completions") => completion(node, Endpoint::Chat, req).await,
        (Method::POST, "/v1/completions") => completion(node, Endpoint::Text, req).await,
        (Method::POST, "/tokenize") => engine_api::tokenize(node, req).await,
        (Method::POST, "/v1/chat/completions/render") => {
            engine_api::render(node, Endpoint::Chat, req).await
        }
        (Method::POST, "/v1/completions/render") => {
            engine_api::render(node, Endpoint::Text, req).await
        }
        (Method::POST, "/reset_prefix_cache") => engine_api::reset_prefix_cache(&node),
        (Method::GET, "/version") => engine_api::version(),
        (Method::GET, "/get_server_info" | "/server_info") => engine_api::server_info(&node),
        (Method::GET, "/get_model_info" | "/model_info") => engine_api::model_info(&node),
        (Method::GET, "/health") => {
            if node.faults().unhealthy {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "unhealthy\n")
            } else {
                respond(StatusCode::OK, "text/plain", "")
            }
        }
        (Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics_text(&node),
        ),
        (Method::GET, "/sim/stats") => json(StatusCode::OK, stats_body(&node)),
        (Method::GET, "/sim/faults") => json(StatusCode::OK, faults_body(&node.faults())),
        (Method::POST, "/sim/faults") => set_faults(&node, req).await,
        (
            _,
            "/v1/models"
            | "/v1/chat/completions"
            | "/v1/completions"
            | "/tokenize"
            | "/v1/chat/completions/render"
            | "/v1/completions/render"
            | "/reset_prefix_cache"
            | "/version"
            | "/get_server_info"
            | "/server_info"
            | "/get_model_info"
            | "/model_info"
            | "/health"
            | "/metrics"
            | "/sim/stats"
            | "/sim/faults",
        ) => json(
            StatusCode::METHOD_NOT_ALLOWED,
            invalid_request("Method not allowed"),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            invalid_request(&format!("No route for {path}")),
        ),
    };
    Ok(response)
}

fn models_body(node: &Node) -> String {
    let data: Vec<serde_json::Value> = node
        .cfg
        .models
        .iter()
        .map(|id| {
            serde_json::json!({"id": id, "object": "model", "created": 0,
                "owned_by": "ferrogate-sim", "max_model_len": MAX_MODEL_LEN})
        })
        .collect();
    serde_json::json!({"object": "list", "data": data}).to_string()
}

/// The metrics page for the node's engine.
pub fn metrics_text(node: &Node) -> String {
    let counters = node.counters();
    let (usage, _) = node.cache_usage();
    render(&MetricsInput {
        engine: node.cfg.engine,
        counters: &counters,
        kv_cache_usage: usage,
        block_tokens: node.cfg.block_tokens,
        cache_blocks: node.cfg.cache_blocks,
    })
}

fn stats_body(node: &Node) -> String {
    serde_json::to_string(&node.stats()).unwrap_or_else(|_| "{}".into())
}

fn faults_body(faults: &Faults) -> String {
    serde_json::to_string(faults).unwrap_or_else(|_| "{}".into())
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| format!("cannot read the request body: {e}"))
}

async fn set_faults(node: &Node, req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(e) => return invalid(&e),
    };
    match Faults::parse(&body) {
        Ok(faults) => {
            let text = faults_body(&faults);
            node.set_faults(faults);
            json(StatusCode::OK, text)
        }
        Err(e) => invalid(&format!("invalid faults: {e}")),
    }
}

async fn completion(node: Arc<Node>, endpoint: Endpoint, req: Request<Incoming>) -> Response<Body> {
    node.record_request(req.headers());
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(e) => {
            node.count_bad_request();
            return invalid(&e);
        }
    };
    let parsed = match parse_completion(endpoint, &body) {
        Ok(parsed) => parsed,
        Err(e) => {
            node.count_bad_request();
            return json(StatusCode::BAD_REQUEST, bad_body(&e));
        }
    };
    if !node.serves(&parsed.model) {
        node.count_bad_request();
        return json(StatusCode::NOT_FOUND, model_not_found(&parsed.model));
    }
    node.record_model_request(&parsed.model);
    if node.faults().injects_error(fastrand::f64()) {
        node.count_injected_error();
        return unavailable(injected_error());
    }
    let Ok(queued) = node.enqueue(&parsed.model) else {
        return unavailable(overloaded());
    };
    let stream = parsed.stream;
    let label = header::HeaderValue::from_str(&node.label).ok();
    let generation = Generation::new(Arc::clone(&node), parsed, queued);
    if stream {
        let mut response = Response::new(StreamBody::new(generation.into_sse()).boxed_unsync());
        let headers = response.headers_mut();
        if let Some(label) = label {
            headers.insert(SIM_NODE_HEADER, label);
        }
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-cache"),
        );
        return response;
    }
    match generation.run_whole().await {
        Ok(whole) => {
            let mut response = json(StatusCode::OK, whole.to_string());
            if let Some(label) = label {
                response.headers_mut().insert(SIM_NODE_HEADER, label);
            }
            response
        }
        Err(_) => {
            // The kill fault: headers go out, then the connection drops with no body.
            let aborted = futures_util::stream::once(async {
                Err::<Frame<Bytes>, io::Error>(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "simulated node dropped the response",
                ))
            });
            let mut response = Response::new(StreamBody::new(aborted).boxed_unsync());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}
