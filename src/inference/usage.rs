//! The token usage an OpenAI-compatible response reports (`usage`: prompt, completion and total
//! tokens), read as its body streams by: a JSON body at its end, or the `data:` lines of an
//! event stream (the last usage seen wins; vLLM and SGLang send it in the final chunk when asked
//! with `stream_options.include_usage`). The quota meter and the request's trace both read it.

/// Largest JSON body read for its usage; a larger one is not read.
pub const MAX_JSON_BODY: usize = 4 << 20;
/// Largest SSE line kept while waiting for its end; a longer one is dropped.
pub const MAX_SSE_LINE: usize = 1 << 20;

/// A response's `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

/// Reads one response body's usage chunk by chunk.
#[derive(Debug, Default)]
pub struct UsageReader {
    /// Unread bytes: the whole JSON body, or the current SSE line.
    buf: Vec<u8>,
    /// `Some(true)` once the body looks like an event stream.
    sse: Option<bool>,
    usage: Option<Usage>,
    done: bool,
}

impl UsageReader {
    /// Feeds a body chunk; `end` says the body ended (with or without this chunk).
    pub fn feed(&mut self, chunk: Option<&[u8]>, end: bool) {
        if self.done {
            return;
        }
        if let Some(chunk) = chunk {
            self.buf.extend_from_slice(chunk);
        }
        let sse = *self.sse.get_or_insert_with(|| {
            let start = self.buf.trim_ascii_start();
            start.starts_with(b"data:") || start.starts_with(b"event:") || start.starts_with(b":")
        });
        if sse {
            self.read_lines();
            if self.buf.len() > MAX_SSE_LINE {
                self.buf.clear();
            }
        } else if self.buf.len() > MAX_JSON_BODY {
            self.buf = Vec::new();
            self.done = true;
            return;
        }
        if end {
            if sse {
                self.buf.push(b'\n');
                self.read_lines();
            } else {
                self.usage = usage_of(&self.buf).or(self.usage);
            }
            self.buf = Vec::new();
            self.done = true;
        }
    }

    /// Whether the body ended (or was given up on).
    pub fn done(&self) -> bool {
        self.done
    }

    /// The usage found so far (the body's, once [`done`](Self::done)).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Reads the complete `data:` lines in the buffer.
    fn read_lines(&mut self) {
        let Some(last_newline) = self.buf.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let rest = self.buf.split_off(last_newline + 1);
        for line in self.buf.split(|&b| b == b'\n') {
            let Some(data) = line.trim_ascii().strip_prefix(b"data:") else {
                continue;
            };
            if let Some(usage) = usage_of(data) {
                self.usage = Some(usage);
            }
        }
        self.buf = rest;
    }
}

/// The `usage` object of a JSON object, when present and an object with a count.
pub fn usage_of(json: &[u8]) -> Option<Usage> {
    let json = json.trim_ascii();
    if !json.starts_with(b"{") || !contains(json, b"\"usage\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let usage = value.get("usage")?;
    let count = |key: &str| usage.get(key).and_then(serde_json::Value::as_u64);
    let found = Usage {
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
        total_tokens: count("total_tokens"),
    };
    (found != Usage::default()).then_some(found)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, completion: u64, total: u64) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: Some(prompt),
            completion_tokens: Some(completion),
            total_tokens: Some(total),
        })
    }

    #[test]
    fn usage_is_read_from_json_objects() {
        assert_eq!(
            usage_of(
                br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#
            ),
            usage(3, 4, 7)
        );
        assert_eq!(
            usage_of(br#"{"usage":{"prompt_tokens":5}}"#).and_then(|u| u.prompt_tokens),
            Some(5)
        );
        assert_eq!(usage_of(br#"{"usage":null}"#), None);
        assert_eq!(usage_of(br#"{"usage":{}}"#), None);
        assert_eq!(usage_of(b"[DONE]"), None);
        assert_eq!(usage_of(b"{not json \"usage\""), None);
    }

    #[test]
    fn a_json_body_is_read_at_its_end_across_chunks() {
        let mut reader = UsageReader::default();
        reader.feed(
            Some(br#"{"usage":{"prompt_tokens":2,"completion_tokens":3,"total_"#),
            false,
        );
        assert_eq!(reader.usage(), None);
        reader.feed(Some(br#"tokens":5}}"#), false);
        reader.feed(None, true);
        assert!(reader.done());
        assert_eq!(reader.usage(), usage(2, 3, 5));
    }

    #[test]
    fn an_event_stream_keeps_the_last_usage_split_anywhere() {
        let mut reader = UsageReader::default();
        reader.feed(Some(b"data: {\"choices\":[],\"usage\":null}\n\nda"), false);
        reader.feed(
            Some(b"ta: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\ndata: [DONE]"),
            false,
        );
        reader.feed(Some(b"\n\n"), true);
        assert_eq!(reader.usage(), usage(9, 3, 12));

        let mut none = UsageReader::default();
        none.feed(Some(b"data: {\"choices\":[]}\n\n"), true);
        assert_eq!(none.usage(), None);
    }

    #[test]
    fn an_oversized_json_body_is_given_up() {
        let mut reader = UsageReader::default();
        reader.feed(Some(&vec![b'{'; MAX_JSON_BODY + 1]), false);
        assert!(reader.done());
        reader.feed(Some(br#"{"usage":{"total_tokens":1}}"#), true);
        assert_eq!(reader.usage(), None);
    }
}
