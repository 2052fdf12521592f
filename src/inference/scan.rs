//! A lenient reader of OpenAI request bodies that works on a prefix: it walks the JSON without
//! building it, collecting the top-level `model`, `user` and `stream` and the prompt text
//! (`messages[*].content`, else `prompt` / `input`) until the bytes run out. Large bodies are
//! routed from their first bytes while the rest streams to the server untouched; small ones are
//! read whole and also checked to be valid JSON by [`super::openai::parse_request`].

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    pub model: Option<String>,
    pub user: Option<String>,
    pub stream: Option<bool>,
    /// Message contents, each followed by a newline (or `prompt` / `input` text when no
    /// `messages`).
    pub prompt: String,
    /// The first message's role and text, when it was read whole (the prompt's leading part
    /// that an engine tokenizes the same in every request that starts with it).
    pub lead: Option<(String, String)>,
    /// The scan reached the end of the top-level object.
    pub complete: bool,
}

/// Deepest nesting walked; deeper input is treated as malformed.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The bytes ran out (a prefix).
    End,
    /// Not JSON.
    Bad,
}

type Step<T> = Result<T, Stop>;

/// What to collect from a value while walking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collect {
    Nothing,
    /// A message list: each element's `content`.
    Messages,
    /// Content: a string, or a list of strings / `{text}` parts.
    Content,
    /// One content part: its `text`.
    Part,
}

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
    messages_text: String,
    prompt_text: String,
    saw_messages: bool,
    /// What a string cut off by the end of the bytes held so far.
    partial: String,
    /// Messages ended so far.
    messages_done: usize,
    /// The `role` of the message being walked.
    role: Option<String>,
    lead: Option<(String, String)>,
}

/// The bytes are not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJson;

/// Scans `bytes`, which may be a prefix of the body.
pub fn scan(bytes: &[u8]) -> Result<Scanned, NotJson> {
    let mut walker = Walker {
        bytes,
        at: 0,
        messages_text: String::new(),
        prompt_text: String::new(),
        saw_messages: false,
        partial: String::new(),
        messages_done: 0,
        role: None,
        lead: None,
    };
    let mut out = Scanned::default();
    let result = walker.top(&mut out);
    out.lead = walker.lead.take();
    out.prompt = if walker.saw_messages {
        walker.messages_text
    } else {
        walker.prompt_text
    };
    match result {
        Ok(()) => {
            out.complete = true;
            Ok(out)
        }
        Err(Stop::End) => Ok(out),
        Err(Stop::Bad) => Err(NotJson),
    }
}

impl Walker<'_> {
    fn peek(&mut self) -> Step<u8> {
        while let Some(&b) = self.bytes.get(self.at) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.at += 1;
            } else {
                return Ok(b);
            }
        }
        Err(Stop::End)
    }

    fn expect(&mut self, byte: u8) -> Step<()> {
        if self.peek()? == byte {
            self.at += 1;
            Ok(())
        } else {
            Err(Stop::Bad)
        }
    }

    fn top(&mut self, out: &mut Scanned) -> Step<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return self.trailing();
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            match key.as_str() {
                "model" | "user" if self.peek()? == b'"' => {
                    let value = self.string()?;
                    if key == "model" {
                        out.model = Some(value);
                    } else {
                        out.user = Some(value);
                    }
                }
                "stream" => {
                    let start = self.at;
                    self.value(Collect::Nothing, 1)?;
                    let text = &self.bytes[start..self.at];
                    out.stream = Some(text.trim_ascii() == b"true");
                }
                "messages" => {
                    self.saw_messages = true;
                    self.value(Collect::Messages, 1)?;
                }
                "prompt" | "input" => self.value(Collect::Content, 1)?,
                _ => self.value(Collect::Nothing, 1)?,
            }
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return self.trailing();
                }
                _ => return Err(Stop::Bad),
            }
        }
    }

    /// Only whitespace may follow the top-level object.
    fn trailing(&mut self) -> Step<()> {
        match self.peek() {
            Err(Stop::End) => Ok(()),
            _ => Err(Stop::Bad),
        }
    }

    fn value(&mut self, collect: Collect, depth: usize) -> Step<()> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad);
        }
        match self.peek()? {
            b'"' if matches!(collect, Collect::Content | Collect::Part) => self.text(),
            b'"' => self.string().map(drop),
            b'{' => self.object(collect, depth),
            b'[' => self.array(collect, depth),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Stop::Bad),
        }
    }

    /// A string that is prompt text: kept even when the bytes end inside it.
    fn text(&mut self) -> Step<()> {
        match self.string() {
            Ok(text) => {
                self.push_text(&text);
                Ok(())
            }
            Err(Stop::End) => {
                let partial = std::mem::take(&mut self.partial);
                self.push_text(&partial);
                Err(Stop::End)
            }
            Err(Stop::Bad) => Err(Stop::Bad),
        }
    }

    fn push_text(&mut self, text: &str) {
        if self.saw_messages {
            self.messages_text.push_str(text);
        } else {
            self.prompt_text.push_str(text);
        }
    }

    fn object(&mut self, collect: Collect, depth: usize) -> Step<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return self.end_message(collect);
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            let inner = match (collect, key.as_str()) {
                (Collect::Messages, "content") => Collect::Content,
                (Collect::Part, "text") => Collect::Content,
                _ => Collect::Nothing,
            };
            if collect == Collect::Messages && key == "role" && self.peek()? == b'"' {
                self.role = Some(self.string()?);
            } else {
                self.value(inner, depth + 1)?;
            }
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return self.end_message(collect);
                }
                _ => return Err(Stop::Bad),
            }
        }
    }

    /// A whole message ends with a newline in the prompt text.
    fn end_message(&mut self, collect: Collect) -> Step<()> {
        if collect == Collect::Messages {
            let role = self.role.take();
            if self.messages_done == 0 {
                self.lead = Some((role.unwrap_or_default(), self.messages_text.clone()));
            }
            self.messages_done += 1;
            self.messages_text.push('\n');
        }
        Ok(())
    }

    fn array(&mut self, collect: Collect, depth: usize) -> Step<()> {
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Ok(());
        }
        let element = match collect {
            // A list of messages: each element is a message object.
            Collect::Messages => Collect::Messages,
            // Content parts: strings, or objects whose `text` counts.
            Collect::Content => Collect::Part,
            Collect::Part | Collect::Nothing => Collect::Nothing,
        };
        loop {
            if element == Collect::Part && self.peek()? == b'"' {
                self.text()?;
            } else {
                self.value(element, depth + 1)?;
            }
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Bad),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Step<()> {
        let rest = &self.bytes[self.at..];
        let n = rest.len().min(word.len());
        if rest[..n] != word[..n] {
            return Err(Stop::Bad);
        }
        self.at += n;
        if n < word.len() {
            return Err(Stop::End);
        }
        Ok(())
    }

    fn number(&mut self) -> Step<()> {
        let start = self.at;
        while let Some(&b) = self.bytes.get(self.at) {
            if matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                self.at += 1;
            } else {
                break;
            }
        }
        if self.at == self.bytes.len() {
            return Err(Stop::End);
        }
        if self.at == start {
            return Err(Stop::Bad);
        }
        Ok(())
    }

    /// A JSON string, unescaped.
    fn string(&mut self) -> Step<String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(self.cut(out));
            };
            self.at += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|_| Stop::Bad),
                b'\\' => {
                    let Some(&e) = self.bytes.get(self.at) else {
                        return Err(self.cut(out));
                    };
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let c = match self.unicode_escape() {
                                Ok(c) => c,
                                Err(Stop::End) => return Err(self.cut(out)),
                                Err(Stop::Bad) => return Err(Stop::Bad),
                            };
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(Stop::Bad),
                    }
                }
                0..=0x1f => return Err(Stop::Bad),
                _ => out.push(b),
            }
        }
    }

    /// Keeps the valid UTF-8 part of a string the bytes ended in.
    fn cut(&mut self, mut out: Vec<u8>) -> Stop {
        let valid = match std::str::from_utf8(&out) {
            Ok(_) => out.len(),
            Err(e) => e.valid_up_to(),
        };
        out.truncate(valid);
        self.partial = String::from_utf8(out).unwrap_or_default();
        Stop::End
    }

    fn hex4(&mut self) -> Step<u32> {
        let Some(digits) = self.bytes.get(self.at..self.at + 4) else {
            return Err(Stop::End);
        };
        let text = std::str::from_utf8(digits).map_err(|_| Stop::Bad)?;
        let value = u32::from_str_radix(text, 16).map_err(|_| Stop::Bad)?;
        self.at += 4;
        Ok(value)
    }

    /// `\uXXXX` after the `u`, joining surrogate pairs; lone surrogates become U+FFFD.
    fn unicode_escape(&mut self) -> Step<char> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high) {
            if self.bytes.get(self.at..self.at + 2) == Some(b"\\u") {
                self.at += 2;
                let low = self.hex4()?;
                if (0xDC00..0xE000).contains(&low) {
                    let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    return Ok(char::from_u32(c).unwrap_or('\u{FFFD}'));
                }
                return Ok('\u{FFFD}');
            }
            if self.at + 2 > self.bytes.len() {
                return Err(Stop::End);
            }
            return Ok('\u{FFFD}');
        }
        Ok(char::from_u32(high).unwrap_or('\u{FFFD}'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = r#"{"stream": true, "model":"llama-3","user":"u1","messages":[{"role":"system","content":"be nice \u00e9\ud83d\ude00"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:x"}}]}],"temperature":0.7,"stop":null}"#;

    #[test]
    fn a_whole_chat_body() {
        let s = scan(CHAT.as_bytes()).unwrap();
        assert_eq!(s.model.as_deref(), Some("llama-3"));
        assert_eq!(s.user.as_deref(), Some("u1"));
        assert_eq!(s.stream, Some(true));
        assert_eq!(s.prompt, "be nice é😀\nhi\n");
        assert_eq!(
            s.lead,
            Some(("system".to_string(), "be nice é😀".to_string()))
        );
        assert!(s.complete);
    }

    #[test]
    fn every_prefix_scans_without_error_and_agrees_with_the_whole() {
        let whole = scan(CHAT.as_bytes()).unwrap();
        for cut in 0..CHAT.len() {
            let s = scan(&CHAT.as_bytes()[..cut]).unwrap_or_else(|_| panic!("cut at {cut}"));
            assert!(!s.complete || cut == CHAT.len());
            assert!(
                whole.prompt.starts_with(&s.prompt),
                "cut at {cut}: {:?}",
                s.prompt
            );
            if let Some(m) = &s.model {
                assert_eq!(m, "llama-3");
            }
        }
    }

    #[test]
    fn completions_and_embeddings() {
        let s = scan(br#"{"model":"m","prompt":"abc"}"#).unwrap();
        assert_eq!((s.model.as_deref(), s.prompt.as_str()), (Some("m"), "abc"));
        let s = scan(br#"{"input":["a","b"],"model":"e"}"#).unwrap();
        assert_eq!((s.model.as_deref(), s.prompt.as_str()), (Some("e"), "ab"));
        let s = scan(br#"{"model":"m","input":[1,2,3]}"#).unwrap();
        assert_eq!(s.prompt, "");
    }

    #[test]
    fn malformed_is_refused() {
        for bad in [
            &b"[1]"[..],
            b"{not json}",
            b"{\"model\":\"m\",}",
            b"{\"model\" \"m\"}",
            b"{\"a\":tru }",
            b"{\"model\":\"m\"} trailing",
            b"{\"a\":\"\x01\"}",
        ] {
            assert!(scan(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(100);
        assert!(scan(format!("{{\"a\":{deep}").as_bytes()).is_err());
    }

    #[test]
    fn the_model_is_found_in_a_prefix_of_a_huge_body() {
        let mut body = String::from(r#"{"model":"big","messages":[{"role":"user","content":""#);
        body.push_str(&"x".repeat(100_000));
        let s = scan(&body.as_bytes()[..4096]).unwrap();
        assert_eq!(s.model.as_deref(), Some("big"));
        assert!(!s.complete);
        assert_eq!(s.prompt.len(), 4096 - 53);
        assert!(s.prompt.bytes().all(|b| b == b'x'));
    }
}
