//! The OpenAI response shapes a node sends: streamed `chat.completion.chunk` / `text_completion`
//! chunks framed as SSE, the final usage chunk, and whole non-streamed responses (error bodies are
//! [`super::errors`]).

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::Endpoint;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    fn json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens.saturating_add(self.completion_tokens),
        })
    }
}

/// Identity shared by every chunk of one response.
#[derive(Debug, Clone)]
pub struct ResponseId {
    pub endpoint: Endpoint,
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ResponseId {
    pub fn new(endpoint: Endpoint, serial: u64, model: &str) -> Self {
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Text => "cmpl",
        };
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        ResponseId {
            endpoint,
            id: format!("{prefix}-sim{serial}"),
            model: model.to_string(),
            created,
        }
    }

    fn chunk(&self, choices: Value) -> Value {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Text => "text_completion",
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model,
               "choices": choices})
    }

    /// The chat stream's opening chunk (role only); `None` for text completions.
    pub fn role_chunk(&self) -> Option<Value> {
        match self.endpoint {
            Endpoint::Chat => Some(self.chunk(json!([{"index": 0,
                "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                "finish_reason": null}]))),
            Endpoint::Text => None,
        }
    }

    /// One output token.
    pub fn token_chunk(&self, text: &str) -> Value {
        self.chunk(match self.endpoint {
            Endpoint::Chat => json!([{"index": 0, "delta": {"content": text}, "logprobs": null,
                "finish_reason": null}]),
            Endpoint::Text => json!([{"index": 0, "text": text, "logprobs": null,
                "finish_reason": null}]),
        })
    }

    /// The chunk carrying the finish reason.
    pub fn finish_chunk(&self, finish_reason: &str) -> Value {
        self.chunk(match self.endpoint {
            Endpoint::Chat => json!([{"index": 0, "delta": {}, "logprobs": null,
                "finish_reason": finish_reason}]),
            Endpoint::Text => json!([{"index": 0, "text": "", "logprobs": null,
                "finish_reason": finish_reason}]),
        })
    }

    /// The last chunk when `stream_options.include_usage` is set: no choices, only usage.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        let mut chunk = self.chunk(json!([]));
        chunk["usage"] = usage.json();
        chunk
    }

    /// A whole non-streamed response.
    pub fn whole(&self, text: &str, finish_reason: &str, usage: Usage) -> Value {
        let (object, choice) = match self.endpoint {
            Endpoint::Chat => (
                "chat.completion",
                json!({"index": 0, "message": {"role": "assistant", "content": text},
                       "logprobs": null, "finish_reason": finish_reason}),
            ),
            Endpoint::Text => (
                "text_completion",
                json!({"index": 0, "text": text, "logprobs": null,
                       "finish_reason": finish_reason}),
            ),
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model,
               "choices": [choice], "usage": usage.json()})
    }
}

/// One SSE event carrying a JSON chunk.
pub fn sse_event(chunk: &Value) -> Bytes {
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// The stream's terminator.
pub fn sse_done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_chunks_have_the_openai_shape() {
        let id = ResponseId::new(Endpoint::Chat, 7, "m");
        let role = id.role_chunk().unwrap();
        assert_eq!(role["object"], "chat.completion.chunk");
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        let tok = id.token_chunk("hi ");
        assert_eq!(tok["choices"][0]["delta"]["content"], "hi ");
        assert_eq!(tok["id"], "chatcmpl-sim7");
        let fin = id.finish_chunk("length");
        assert_eq!(fin["choices"][0]["finish_reason"], "length");
        let usage = id.usage_chunk(Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
        });
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 7);
    }

    #[test]
    fn text_completion_shapes() {
        let id = ResponseId::new(Endpoint::Text, 1, "m");
        assert!(id.role_chunk().is_none());
        assert_eq!(id.token_chunk("a ")["choices"][0]["text"], "a ");
        assert_eq!(id.token_chunk("a ")["object"], "text_completion");
        let whole = id.whole(
            "a b ",
            "stop",
            Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
            },
        );
        assert_eq!(whole["choices"][0]["text"], "a b ");
        assert_eq!(whole["usage"]["completion_tokens"], 2);
    }

    #[test]
    fn sse_framing() {
        let e = sse_event(&json!({"a": 1}));
        assert_eq!(&e[..], b"data: {\"a\":1}\n\n");
        assert_eq!(&sse_done()[..], b"data: [DONE]\n\n");
    }
}
