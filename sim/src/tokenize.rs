//! The token endpoints vLLM serves and routers call before choosing a node: `POST /tokenize`
//! (a `prompt` or chat `messages`) and the render endpoints `POST /v1/chat/completions/render`
//! and `POST /v1/completions/render` (a completion body in, its prompt token ids out, nothing
//! generated). Bodies in, JSON out; the HTTP layer checks the model.

use serde_json::{json, Value};

use super::request::{BodyError, CompletionBody, Endpoint};
use super::tokenizer::{self, MAX_MODEL_LEN};

/// A parsed token request: the model it names (optional for `/tokenize`) and its prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub model: Option<String>,
    /// The prompt text (chat messages already through the template).
    pub text: String,
    pub return_token_strs: bool,
    pub stream: bool,
    pub max_tokens: Option<u64>,
}

/// Parses a `/tokenize` or render body.
pub fn parse(body: &[u8]) -> Result<TokenRequest, BodyError> {
    let body = CompletionBody::parse(body)?;
    Ok(TokenRequest {
        text: body.prompt_text(),
        return_token_strs: body.return_token_strs.unwrap_or(false),
        stream: body.stream.unwrap_or(false),
        max_tokens: body.max_completion_tokens.or(body.max_tokens),
        model: body.model,
    })
}

/// vLLM's `/tokenize` answer: `{"count","max_model_len","tokens","token_strs"}`.
pub fn tokenize_answer(req: &TokenRequest) -> Value {
    let tokens = tokenizer::tokens(&req.text);
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    let strs = req.return_token_strs.then(|| {
        tokens
            .iter()
            .map(|t| String::from_utf8_lossy(t.bytes).into_owned())
            .collect::<Vec<_>>()
    });
    json!({"count": ids.len(), "max_model_len": MAX_MODEL_LEN, "tokens": ids,
           "token_strs": strs})
}

/// vLLM's render answer: the request as the engine would take it, with its prompt token ids.
pub fn render_answer(endpoint: Endpoint, serial: u64, model: &str, req: &TokenRequest) -> Value {
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Text => "cmpl",
    };
    json!({
        "request_id": format!("{prefix}-render-{serial}"),
        "model": model,
        "token_ids": tokenizer::encode(&req.text),
        "features": null,
        "sampling_params": {"max_tokens": req.max_tokens},
        "stream": req.stream,
        "cache_salt": null,
        "priority": 0,
        "lora_request": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{chunk_id, IM_END_ID, IM_START_ID};

    #[test]
    fn tokenize_a_prompt_and_messages() {
        let req = parse(br#"{"model":"m","prompt":"abcdef","add_special_tokens":true}"#).unwrap();
        assert_eq!(req.model.as_deref(), Some("m"));
        let v = tokenize_answer(&req);
        assert_eq!(v["count"], 2);
        assert_eq!(v["tokens"], json!([chunk_id(b"abcd"), chunk_id(b"ef")]));
        assert_eq!(v["max_model_len"], 32768);
        assert_eq!(v["token_strs"], Value::Null);
        let req = parse(
            br#"{"continue_final_message":false,"return_token_strs":true,
                "messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(req.model, None);
        let v = tokenize_answer(&req);
        let ids = v["tokens"].as_array().unwrap();
        assert_eq!(ids[0], json!(IM_START_ID));
        assert!(ids.contains(&json!(IM_END_ID)));
        assert_eq!(v["count"], ids.len());
        assert_eq!(v["token_strs"][0], "<|im_start|>");
        assert_eq!(v["token_strs"][1], "user");
    }

    #[test]
    fn render_gives_the_completion_prompt_ids() {
        let body = br#"{"model":"m","stream":true,"max_tokens":4,
            "messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]}"#;
        let req = parse(body).unwrap();
        let v = render_answer(Endpoint::Chat, 3, "m", &req);
        assert_eq!(v["request_id"], "chatcmpl-render-3");
        assert_eq!(v["stream"], true);
        assert_eq!(v["sampling_params"]["max_tokens"], 4);
        let completion = crate::request::parse_completion(Endpoint::Chat, body).unwrap();
        assert_eq!(
            v["token_ids"],
            json!(tokenizer::encode(&completion.prompt)),
            "render and completion see the same tokens"
        );
        assert_eq!(
            v["token_ids"],
            tokenize_answer(&parse(body).unwrap())["tokens"]
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(parse(b"{nope"), Err(BodyError::Malformed(_))));
        assert!(matches!(
            parse(br#"{"prompt":7}"#),
            Err(BodyError::Malformed(_))
        ));
    }
}
