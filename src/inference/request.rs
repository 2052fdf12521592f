//! What routing needs from one inference request: which OpenAI endpoint it is, and once its body
//! was read, the model, the prompt's prefix block hashes and the session key.

use std::sync::Arc;

use http::{HeaderMap, Method};

use super::affinity::session_key;
use super::openai::InferenceRequest;
use super::prefix::{block_hashes, estimate_tokens, normalize};
use crate::balance::hashing::stable_hash;

/// `X-OpenWebUI-Chat-Id`: one chat, the best affinity key.
pub const CHAT_ID_HEADER: &str = "x-openwebui-chat-id";
/// `X-OpenWebUI-User-Id`: one user.
pub const USER_ID_HEADER: &str = "x-openwebui-user-id";

/// The kinds of request an inference upstream treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST …/chat/completions`, `…/completions`, `…/embeddings`: routed by the body's model.
    Generate,
    /// `GET …/models`: answered at the edge with the merged list.
    Models,
    /// Anything else: balanced without looking at the body.
    Other,
}

/// Classifies a request by method and path (the path as the client sent it).
pub fn endpoint(method: &Method, path: &str) -> Endpoint {
    let path = path.trim_end_matches('/');
    if *method == Method::POST
        && (path.ends_with("/chat/completions")
            || path.ends_with("/completions")
            || path.ends_with("/embeddings"))
    {
        return Endpoint::Generate;
    }
    if (*method == Method::GET || *method == Method::HEAD) && path.ends_with("/models") {
        return Endpoint::Models;
    }
    Endpoint::Other
}

/// OpenTelemetry's `gen_ai.operation.name` of a generate request's path.
pub fn operation(path: &str) -> &'static str {
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions") {
        "chat"
    } else if path.ends_with("/embeddings") {
        "embeddings"
    } else {
        "text_completion"
    }
}

/// The routing facts of one generate request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceFacts {
    pub model: String,
    /// Chained hashes of the normalized prompt's blocks (see [`super::prefix`]).
    pub hashes: Vec<u64>,
    /// The prompt's tokens, estimated from its normalized text.
    pub prompt_tokens: f64,
    /// The session affinity key, if the request carries one.
    pub session: Option<String>,
    pub stream: bool,
    /// The prompt's first message, for engines whose KV-cache events are followed.
    pub lead: Option<Arc<LeadMessage>>,
}

/// A prompt's first message: an engine tokenizes it the same at the head of every request that
/// starts with it (a tenant's system prompt), so its tokens are asked for once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadMessage {
    /// Identifies (model, role, text).
    pub key: u64,
    pub model: String,
    pub role: String,
    pub content: String,
}

impl LeadMessage {
    pub fn new(model: &str, role: String, content: String) -> Self {
        Self {
            key: stable_hash(&[
                model.as_bytes(),
                b"\0",
                role.as_bytes(),
                b"\0",
                content.as_bytes(),
            ]),
            model: model.to_string(),
            role,
            content,
        }
    }
}

impl InferenceFacts {
    pub fn new(request: InferenceRequest, headers: &HeaderMap) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let session = session_key(
            header(CHAT_ID_HEADER),
            header(USER_ID_HEADER),
            request.user.as_deref(),
        )
        .map(str::to_string);
        let normalized = normalize(&request.prompt);
        let lead = request
            .lead
            .map(|(role, content)| Arc::new(LeadMessage::new(&request.model, role, content)));
        Self {
            lead,
            hashes: block_hashes(&normalized),
            prompt_tokens: estimate_tokens(normalized.chars().count()),
            model: request.model,
            session,
            stream: request.stream,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn operations_are_named_as_opentelemetry_does() {
        assert_eq!(operation("/v1/chat/completions"), "chat");
        assert_eq!(operation("/v1/completions/"), "text_completion");
        assert_eq!(operation("/openai/v1/embeddings"), "embeddings");
    }
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint(&Method::POST, "/v1/chat/completions"),
            Endpoint::Generate
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1/completions/"),
            Endpoint::Generate
        );
        assert_eq!(
            endpoint(&Method::POST, "/api/v1/embeddings"),
            Endpoint::Generate
        );
        assert_eq!(endpoint(&Method::GET, "/v1/models"), Endpoint::Models);
        assert_eq!(
            endpoint(&Method::GET, "/v1/chat/completions"),
            Endpoint::Other
        );
        assert_eq!(endpoint(&Method::POST, "/v1/models"), Endpoint::Other);
        assert_eq!(endpoint(&Method::POST, "/v1/audio/speech"), Endpoint::Other);
    }

    #[test]
    fn facts_take_the_chat_id_first() {
        let mut headers = HeaderMap::new();
        headers.insert(USER_ID_HEADER, "user-7".parse().unwrap());
        let request = InferenceRequest {
            model: "m".into(),
            prompt: "p ".repeat(500),
            user: Some("body-user".into()),
            stream: true,
            lead: Some(("system".into(), "hello".into())),
        };
        let facts = InferenceFacts::new(request.clone(), &headers);
        assert_eq!(facts.session.as_deref(), Some("user-7"));
        assert_eq!(facts.hashes.len(), 3);
        assert_eq!(facts.prompt_tokens, 250.0);
        let lead = facts.lead.as_deref().expect("lead");
        assert_eq!(
            lead.key,
            LeadMessage::new("m", "system".into(), "hello".into()).key
        );
        assert_ne!(
            lead.key,
            LeadMessage::new("n", "system".into(), "hello".into()).key
        );
        headers.insert(CHAT_ID_HEADER, "chat-1".parse().unwrap());
        let facts = InferenceFacts::new(request, &headers);
        assert_eq!(facts.session.as_deref(), Some("chat-1"));
    }
}
