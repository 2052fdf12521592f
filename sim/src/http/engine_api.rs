//! The engine endpoints beside the OpenAI ones that routers call on a node: vLLM's `/tokenize`,
//! the render endpoints, `/reset_prefix_cache` and `/version`, and SGLang's server and model
//! info (`/get_server_info`, `/server_info`, `/get_model_info`, `/model_info`).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::{invalid, json, read_body, Body};
use crate::errors::{bad_body, model_not_found};
use crate::node::Node;
use crate::request::Endpoint;
use crate::tokenize;

/// What the node answers as its version.
const VERSION: &str = "0.0.0-ferrogate-sim";

/// `POST /tokenize`: a named model must be served; no model means the node's own.
pub async fn tokenize(node: Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let parsed = match parse(&node, req).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    json(
        StatusCode::OK,
        tokenize::tokenize_answer(&parsed).to_string(),
    )
}

/// `POST /v1/chat/completions/render` and `POST /v1/completions/render`.
pub async fn render(node: Arc<Node>, endpoint: Endpoint, req: Request<Incoming>) -> Response<Body> {
    let parsed = match parse(&node, req).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let model = parsed
        .model
        .clone()
        .unwrap_or_else(|| default_model(&node).to_string());
    let answer = tokenize::render_answer(endpoint, node.next_serial(), &model, &parsed);
    json(StatusCode::OK, answer.to_string())
}

async fn parse(
    node: &Node,
    req: Request<Incoming>,
) -> Result<tokenize::TokenRequest, Response<Body>> {
    let body = read_body(req).await.map_err(|e| invalid(&e))?;
    let parsed = tokenize::parse(&body).map_err(|e| json(StatusCode::BAD_REQUEST, bad_body(&e)))?;
    if let Some(model) = &parsed.model {
        if !node.serves(model) {
            return Err(json(StatusCode::NOT_FOUND, model_not_found(model)));
        }
    }
    Ok(parsed)
}

fn default_model(node: &Node) -> &str {
    node.cfg.models.first().map_or("", String::as_str)
}

/// `POST /reset_prefix_cache`: 200 when the cache was dropped, 503 while requests hold blocks.
pub fn reset_prefix_cache(node: &Node) -> Response<Body> {
    if node.reset_prefix_cache() {
        super::respond(StatusCode::OK, "text/plain", "")
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::errors::error_json(
                "Cannot reset the prefix cache while requests are running",
                "server_error",
                None,
                None,
            ),
        )
    }
}

pub fn version() -> Response<Body> {
    json(StatusCode::OK, json!({"version": VERSION}).to_string())
}

/// SGLang's `/get_server_info`.
pub fn server_info(node: &Node) -> Response<Body> {
    let model = default_model(node);
    let tokens = node.cfg.cache_blocks.saturating_mul(node.cfg.block_tokens);
    json(
        StatusCode::OK,
        json!({"model_path": model, "served_model_name": model,
               "max_total_num_tokens": tokens, "version": VERSION})
        .to_string(),
    )
}

/// SGLang's `/get_model_info`.
pub fn model_info(node: &Node) -> Response<Body> {
    json(
        StatusCode::OK,
        json!({"model_path": default_model(node), "is_generation": true}).to_string(),
    )
}
