//! What a completion request asks of the node: which endpoint, model, prompt text, streaming
//! options and output length, read from the OpenAI JSON body into the simulator's own serde types
//! (independent of the proxy's parser, so a bug in one is caught by the other). Chat messages are
//! rendered through the node's chat template ([`super::tokenizer`]); the `/tokenize` and render
//! bodies reuse the same message types.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::tokenizer::{render_chat, ChatMessage};

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
    /// The chat messages rendered by the chat template, or the text completion's `prompt`.
    pub prompt: String,
    pub stream: bool,
    /// `stream_options.include_usage`: end the stream with a usage chunk.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
}

/// Why a completion body was refused (answered 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, not an object, or a field of the wrong type.
    Malformed(String),
    /// No `model`.
    MissingModel,
}

/// The fields of a chat or text completion body the node reads; the rest are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionBody {
    pub(crate) model: Option<String>,
    pub(crate) messages: Option<Vec<Message>>,
    pub(crate) prompt: Option<Prompt>,
    pub(crate) stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) max_completion_tokens: Option<u64>,
    /// `false` when the last (assistant) message is to be continued, not answered.
    pub(crate) add_generation_prompt: Option<bool>,
    pub(crate) continue_final_message: Option<bool>,
    /// `/tokenize`: also answer each token's text.
    pub(crate) return_token_strs: Option<bool>,
}

/// One chat message (role and content; other fields ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    role: Option<String>,
    content: Option<Content>,
}

/// A message's content: a string, or a list of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One content part: `{"type":"text","text":…}` (other kinds, e.g. images, carry no text), or a
/// bare string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Part {
    Text(String),
    Object { text: Option<String> },
}

/// A text completion's `prompt`: a string, or a batch whose string items are joined (token-id
/// items carry no text).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Prompt {
    Text(String),
    Batch(Vec<PromptItem>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PromptItem {
    Text(String),
    Tokens(IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

impl Content {
    fn push_to(&self, out: &mut String) {
        match self {
            Content::Text(text) => out.push_str(text),
            Content::Parts(parts) => {
                for part in parts {
                    match part {
                        Part::Text(text) | Part::Object { text: Some(text) } => out.push_str(text),
                        Part::Object { text: None } => {}
                    }
                }
            }
        }
    }
}

impl Prompt {
    pub(crate) fn text(&self) -> String {
        match self {
            Prompt::Text(text) => text.clone(),
            Prompt::Batch(items) => items
                .iter()
                .filter_map(|item| match item {
                    PromptItem::Text(text) => Some(text.as_str()),
                    PromptItem::Tokens(_) => None,
                })
                .collect(),
        }
    }
}

impl CompletionBody {
    /// Reads a JSON body.
    pub(crate) fn parse(body: &[u8]) -> Result<CompletionBody, BodyError> {
        serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
    }

    /// The prompt text: chat `messages` through the template when present, else `prompt`.
    pub(crate) fn prompt_text(&self) -> String {
        match (&self.messages, &self.prompt) {
            (Some(messages), _) => {
                let continue_final = self.continue_final_message.unwrap_or(false);
                let add = self.add_generation_prompt.unwrap_or(true) && !continue_final;
                render_chat(&chat_messages(messages), add)
            }
            (None, Some(prompt)) => prompt.text(),
            (None, None) => String::new(),
        }
    }
}

/// Messages as the template takes them (a message without a role is the user's).
pub(crate) fn chat_messages(messages: &[Message]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| {
            let mut content = String::new();
            if let Some(c) = &m.content {
                c.push_to(&mut content);
            }
            ChatMessage {
                role: m.role.clone().unwrap_or_else(|| "user".to_string()),
                content,
            }
        })
        .collect()
}

/// Parses a completion body. Chat `messages` make the prompt when present, else `prompt`.
pub fn parse_completion(endpoint: Endpoint, body: &[u8]) -> Result<CompletionRequest, BodyError> {
    let body = CompletionBody::parse(body)?;
    let prompt = body.prompt_text();
    let model = body.model.ok_or(BodyError::MissingModel)?;
    let max_tokens = body
        .max_completion_tokens
        .or(body.max_tokens)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(CompletionRequest {
        endpoint,
        model,
        prompt,
        stream: body.stream.unwrap_or(false),
        include_usage: body
            .stream_options
            .and_then(|options| options.include_usage)
            .unwrap_or(false),
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
        assert_eq!(
            r.prompt,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(r.stream && r.include_usage);
        assert_eq!(r.max_tokens, Some(7));
    }

    #[test]
    fn joins_messages_and_content_parts() {
        let body = br#"{"model":"m","user":"u","messages":[
            {"role":"system","content":"be nice"},
            {"role":"user","content":[{"type":"text","text":"hi"},
                {"type":"image_url","image_url":{"url":"x"}},"there"]},
            {"role":"assistant","content":null,"tool_calls":[]}]}"#;
        let r = parse_completion(Endpoint::Chat, body).unwrap();
        assert_eq!(
            r.prompt,
            "<|im_start|>system\nbe nice<|im_end|>\n<|im_start|>user\nhithere<|im_end|>\n\
             <|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(!r.stream);
    }

    #[test]
    fn messages_win_over_prompt_and_batches_keep_their_text() {
        let body = br#"{"model":"m","prompt":"p","messages":[{"content":"c"}]}"#;
        assert_eq!(
            parse_completion(Endpoint::Chat, body).unwrap().prompt,
            "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
        );
        let body = br#"{"model":"m","continue_final_message":true,"add_generation_prompt":false,
            "messages":[{"role":"assistant","content":"so"}]}"#;
        assert_eq!(
            parse_completion(Endpoint::Chat, body).unwrap().prompt,
            "<|im_start|>assistant\nso<|im_end|>\n"
        );
        let body = br#"{"model":"m","prompt":["ab",[1,2],"cd"]}"#;
        assert_eq!(
            parse_completion(Endpoint::Text, body).unwrap().prompt,
            "abcd"
        );
        let body = br#"{"model":"m"}"#;
        assert_eq!(parse_completion(Endpoint::Text, body).unwrap().prompt, "");
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
        let huge = br#"{"model":"m","prompt":"a","max_tokens":99999999999,"stream":null}"#;
        let r = parse_completion(Endpoint::Text, huge).unwrap();
        assert_eq!(r.max_tokens, Some(u32::MAX));
        assert!(!r.stream);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b"{oops"[..],
            b"[1]",
            b"{\"model\":\"m\"} trailing",
            b"{\"model\":7}",
            b"{\"model\":\"m\",\"stream\":\"yes\"}",
            b"{\"model\":\"m\",\"max_tokens\":-1}",
        ] {
            assert!(
                matches!(
                    parse_completion(Endpoint::Chat, body),
                    Err(BodyError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_completion(Endpoint::Chat, br#"{"messages":[]}"#),
            Err(BodyError::MissingModel)
        );
    }
}
