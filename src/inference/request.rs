//! What routing needs from one inference request: which OpenAI endpoint it is, and once its body
//! was read, the model, the prompt's prefix block hashes and the session key.

use http::{HeaderMap, Method};

use super::affinity::session_key;
use super::openai::InferenceRequest;
use super::prefix::{block_hashes, normalize};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceFacts {
    pub model: String,
    /// Chained hashes of the normalized prompt's blocks (see [`super::prefix`]).
    pub hashes: Vec<u64>,
    /// The session affinity key, if the request carries one.
    pub session: Option<String>,
    pub stream: bool,
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
        Self {
            hashes: block_hashes(&normalize(&request.prompt)),
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
        };
        let facts = InferenceFacts::new(request.clone(), &headers);
        assert_eq!(facts.session.as_deref(), Some("user-7"));
        assert_eq!(facts.hashes.len(), 3);
        headers.insert(CHAT_ID_HEADER, "chat-1".parse().unwrap());
        let facts = InferenceFacts::new(request, &headers);
        assert_eq!(facts.session.as_deref(), Some("chat-1"));
    }
}
