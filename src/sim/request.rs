//! What a completion request asks of the node: which endpoint, model, prompt text, streaming
//! options and output length, read from the OpenAI JSON body.

use serde_json::Value;

use crate::inference::openai::{parse_request, BodyError};

/// The two completion endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Text,
}

/// A parsed completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRequest {
    pub endpoint: Endpoint,
    pub model: String,
    /// Chat message contents joined by newlines, or `prompt`.
    pub prompt: String,
    pub stream: bool,
    /// `stream_options.include_usage`: end the stream with a usage chunk.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
}

/// Parses a completion body (shapes as the proxy's own parser reads them).
pub fn parse_completion(endpoint: Endpoint, body: &[u8]) -> Result<CompletionRequest, BodyError> {
    let base = parse_request(body)?;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
    let include_usage = value
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|key| value.get(key).and_then(Value::as_u64))
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(CompletionRequest {
        endpoint,
        model: base.model,
        prompt: base.prompt,
        stream: base.stream,
        include_usage,
        max_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chat_options() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},
            "max_tokens":7,"messages":[{"role":"user","content":"hi"}]}"#;
        let r = parse_completion(Endpoint::Chat, body).unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(r.prompt, "hi\n");
        assert!(r.stream && r.include_usage);
        assert_eq!(r.max_tokens, Some(7));
    }

    #[test]
    fn max_completion_tokens_wins_and_defaults_hold() {
        let body = br#"{"model":"m","prompt":"abc","max_tokens":7,"max_completion_tokens":3}"#;
        let r = parse_completion(Endpoint::Text, body).unwrap();
        assert_eq!(r.max_tokens, Some(3));
        assert_eq!(r.prompt, "abc");
        let r = parse_completion(Endpoint::Text, br#"{"model":"m","prompt":"abc"}"#).unwrap();
        assert_eq!(r.max_tokens, None);
        assert!(!r.stream && !r.include_usage);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(matches!(
            parse_completion(Endpoint::Chat, b"{oops"),
            Err(BodyError::Malformed(_))
        ));
        assert_eq!(
            parse_completion(Endpoint::Chat, br#"{"messages":[]}"#),
            Err(BodyError::MissingModel)
        );
    }
}
