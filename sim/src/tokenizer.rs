//! The node's deterministic tokenizer and chat template (no model behind them): a ChatML
//! template renders chat messages into one prompt, the special markers `<|im_start|>` and
//! `<|im_end|>` become ids 1 and 2, and every run of text between them is cut into chunks of
//! four UTF-8 bytes, each mapped to `3 + fnv1a32(chunk) % 100000`. A shared system message
//! therefore yields the same leading token ids, and a text of n ASCII characters is about n/4
//! tokens. Pure functions.

/// Bytes of text per token.
pub const BYTES_PER_TOKEN: usize = 4;
/// Opens a message in the chat template.
pub const IM_START: &str = "<|im_start|>";
/// Closes a message in the chat template.
pub const IM_END: &str = "<|im_end|>";
/// Token id of [`IM_START`].
pub const IM_START_ID: u32 = 1;
/// Token id of [`IM_END`].
pub const IM_END_ID: u32 = 2;
/// First id of a text chunk.
const FIRST_TEXT_ID: u32 = 3;
/// Distinct text chunk ids.
const TEXT_IDS: u32 = 100_000;
/// Context length the node advertises (`max_model_len`); not enforced.
pub const MAX_MODEL_LEN: u32 = 32768;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// One chat message as the template sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    /// The text of the content (text parts joined).
    pub content: String,
}

/// Renders `messages` with the ChatML template; `add_generation_prompt` appends the assistant's
/// opening.
pub fn render_chat(messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for message in messages {
        out.push_str(IM_START);
        out.push_str(&message.role);
        out.push('\n');
        out.push_str(&message.content);
        out.push_str(IM_END);
        out.push('\n');
    }
    if add_generation_prompt {
        out.push_str(IM_START);
        out.push_str("assistant\n");
    }
    out
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The id of one text chunk.
pub fn chunk_id(chunk: &[u8]) -> u32 {
    FIRST_TEXT_ID + fnv1a32(chunk) % TEXT_IDS
}

/// One token: its id and the bytes it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub id: u32,
    pub bytes: &'a [u8],
}

/// Tokens of `text` with the bytes of each (for `return_token_strs`).
pub fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::with_capacity(text.len() / BYTES_PER_TOKEN + 2);
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let (special, at) = next_special(rest);
        for chunk in rest[..at].chunks(BYTES_PER_TOKEN) {
            out.push(Token {
                id: chunk_id(chunk),
                bytes: chunk,
            });
        }
        rest = &rest[at..];
        if let Some((id, marker)) = special {
            out.push(Token {
                id,
                bytes: &rest[..marker.len()],
            });
            rest = &rest[marker.len()..];
        }
    }
    out
}

/// Token ids of `text`.
pub fn encode(text: &str) -> Vec<u32> {
    tokens(text).into_iter().map(|t| t.id).collect()
}

/// The first special marker in `bytes` (its id and text) and where it starts; `(None, len)`
/// when there is none.
fn next_special(bytes: &[u8]) -> (Option<(u32, &'static str)>, usize) {
    let find = |marker: &str| {
        bytes
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
    };
    match (find(IM_START), find(IM_END)) {
        (Some(s), Some(e)) if e < s => (Some((IM_END_ID, IM_END)), e),
        (Some(s), _) => (Some((IM_START_ID, IM_START)), s),
        (None, Some(e)) => (Some((IM_END_ID, IM_END)), e),
        (None, None) => (None, bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn chatml_rendering() {
        let messages = [msg("system", "be nice"), msg("user", "hi")];
        assert_eq!(
            render_chat(&messages, true),
            "<|im_start|>system\nbe nice<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(
            render_chat(&messages[..1], false),
            "<|im_start|>system\nbe nice<|im_end|>\n"
        );
    }

    #[test]
    fn fnv_and_chunk_ids_follow_the_spec() {
        // FNV-1a 32 reference values.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
        assert_eq!(chunk_id(b"a"), 3 + 0xe40c_292c % 100_000);
        assert_eq!(
            encode("abcdefgh"),
            vec![chunk_id(b"abcd"), chunk_id(b"efgh")]
        );
        assert_eq!(encode("abcde"), vec![chunk_id(b"abcd"), chunk_id(b"e")]);
        assert!(encode("").is_empty());
    }

    #[test]
    fn special_markers_are_single_ids_and_restart_chunking() {
        let text = "<|im_start|>user\nhello<|im_end|>\n";
        let t = tokens(text);
        let ids: Vec<u32> = t.iter().map(|t| t.id).collect();
        assert_eq!(
            ids,
            vec![
                IM_START_ID,
                chunk_id(b"user"),
                chunk_id(b"\nhel"),
                chunk_id(b"lo"),
                IM_END_ID,
                chunk_id(b"\n"),
            ]
        );
        let rebuilt: Vec<u8> = t.iter().flat_map(|t| t.bytes.iter().copied()).collect();
        assert_eq!(rebuilt, text.as_bytes());
        // An end marker before a start marker is found first.
        assert_eq!(
            encode("x<|im_end|><|im_start|>")[1..],
            [IM_END_ID, IM_START_ID]
        );
    }

    #[test]
    fn a_shared_system_message_shares_the_leading_ids() {
        let system = msg("system", &"handbook ".repeat(100));
        let a = encode(&render_chat(&[system.clone(), msg("user", "first")], true));
        let b = encode(&render_chat(
            &[system, msg("user", "second question")],
            true,
        ));
        let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        assert!(shared >= 900 / 4, "{shared}");
        // About a quarter of the characters.
        let n = encode(&"x".repeat(4000)).len();
        assert_eq!(n, 1000);
    }

    #[test]
    fn utf8_chunks_may_split_characters() {
        // Four bytes at a time, whatever the characters: ids stay deterministic.
        let t = tokens("ééé");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].bytes.len(), 4);
        assert_eq!(encode("ééé"), encode("ééé"));
    }
}
