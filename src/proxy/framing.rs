//! Request-head checks that pingora's parser leaves to us: an oversized head (431) and a request
//! carrying both Content-Length and Transfer-Encoding, or Content-Length twice (400: smuggling
//! vectors that we refuse instead of repairing; RFC 9112 allows either, and forwarding two equal
//! values leaves the backend to decide). Pure functions over the raw head bytes.

/// Largest request head (request line + headers) accepted, like HAProxy's 16k buffer with room
/// for large cookies.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingViolation {
    /// 431 Request Header Fields Too Large.
    HeadTooLarge,
    /// 400: both Content-Length and Transfer-Encoding.
    ContentLengthWithTransferEncoding,
    /// 400: more than one Content-Length header line (even with equal values).
    DuplicateContentLength,
}

impl FramingViolation {
    pub fn status(self) -> u16 {
        match self {
            Self::HeadTooLarge => 431,
            Self::ContentLengthWithTransferEncoding | Self::DuplicateContentLength => 400,
        }
    }
}

/// Checks a raw HTTP/1 request head. `has_transfer_encoding` says whether the parsed head kept a
/// Transfer-Encoding header (the parser drops Content-Length in that case, so the raw bytes are
/// the only place left to see it).
pub fn check_head(
    raw: &[u8],
    has_transfer_encoding: bool,
    max_bytes: usize,
) -> Result<(), FramingViolation> {
    if raw.len() > max_bytes {
        return Err(FramingViolation::HeadTooLarge);
    }
    let content_lengths = count_header(raw, b"content-length");
    if has_transfer_encoding && content_lengths > 0 {
        return Err(FramingViolation::ContentLengthWithTransferEncoding);
    }
    if content_lengths > 1 {
        return Err(FramingViolation::DuplicateContentLength);
    }
    Ok(())
}

/// How many header lines with this (lowercase) name a raw head holds.
fn count_header(raw: &[u8], lowercase_name: &[u8]) -> usize {
    raw.split(|b| *b == b'\n')
        .skip(1)
        .filter(|line| {
            line.len() > lowercase_name.len()
                && line[..lowercase_name.len()].eq_ignore_ascii_case(lowercase_name)
                && matches!(line[lowercase_name.len()], b':' | b' ' | b'\t')
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_content_length_twice() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(
            check_head(raw, false, 1024),
            Err(FramingViolation::DuplicateContentLength)
        );
    }

    #[test]
    fn accepts_ordinary_heads() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(check_head(raw, false, 1024), Ok(()));
        let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check_head(chunked, true, 1024), Ok(()));
    }

    #[test]
    fn refuses_both_framings_in_any_case() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\ncOnTeNt-LeNgTh: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            check_head(raw, true, 1024),
            Err(FramingViolation::ContentLengthWithTransferEncoding)
        );
    }

    #[test]
    fn a_header_merely_containing_the_name_is_not_a_match() {
        let raw = b"POST / HTTP/1.1\r\nX-Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check_head(raw, true, 1024), Ok(()));
    }

    #[test]
    fn refuses_oversized_heads() {
        let raw = vec![b'a'; 2048];
        assert_eq!(
            check_head(&raw, false, 1024),
            Err(FramingViolation::HeadTooLarge)
        );
        assert_eq!(FramingViolation::HeadTooLarge.status(), 431);
    }
}
