//! `X-Request-Id`: keep a client's id when it is sane (short, visible, no separators that could
//! break a log line or a header), otherwise make a fresh random 128-bit one as 32 hex digits.
//! Either way the value is marked never to be indexed: an id does not repeat, so over HTTP/2 it
//! goes as an HPACK literal and leaves the dynamic table to the fields that do repeat (indexed,
//! each would evict one of them and cost a walk of the earlier ids on the way in).

use http::{HeaderName, HeaderValue};

/// The header carrying the request id to the backend and back to the client.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// [`REQUEST_ID_HEADER`] as a header name.
pub static REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// Longest client-supplied id that is kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The client's id when it is acceptable to keep: 1..=128 bytes of ASCII letters, digits and
/// `-_.:+=/@`. Anything else (spaces, quotes, control bytes, non-ASCII, too long) is replaced.
pub fn sanitize(value: &[u8]) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+=/@".contains(b));
    if ok {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// A fresh id: 128 random bits as 32 lowercase hex digits.
pub fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::random::<u128>();
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    let mut id = HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"));
    id.set_sensitive(true);
    id
}

/// The id for a request: the client's (when sane, shared, not copied) or a fresh one.
pub fn from_request(incoming: Option<&HeaderValue>) -> HeaderValue {
    match incoming.filter(|v| sanitize(v.as_bytes()).is_some()) {
        Some(kept) => {
            let mut id = kept.clone();
            id.set_sensitive(true);
            id
        }
        None => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_indexed() {
        assert!(generate().is_sensitive());
        let kept = HeaderValue::from_static("client-id-1");
        assert!(from_request(Some(&kept)).is_sensitive());
        assert!(from_request(None).is_sensitive());
    }

    #[test]
    fn keeps_sane_ids() {
        assert_eq!(sanitize(b"abc-123"), Some("abc-123"));
        assert_eq!(
            sanitize(b"req_2024.11.23:7+x=/y@z"),
            Some("req_2024.11.23:7+x=/y@z")
        );
        let longest = "a".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(sanitize(longest.as_bytes()), Some(longest.as_str()));
    }

    #[test]
    fn refuses_odd_ids() {
        for bad in [
            &b""[..],
            b"has space",
            b"quote\"d",
            b"new\nline",
            b"semi;colon",
            "caf\u{e9}".as_bytes(),
        ] {
            assert_eq!(sanitize(bad), None, "{bad:?}");
        }
        assert_eq!(
            sanitize("a".repeat(MAX_REQUEST_ID_LEN + 1).as_bytes()),
            None
        );
    }

    #[test]
    fn generates_unique_hex_ids() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
    }

    #[test]
    fn replaces_only_missing_or_odd_ids() {
        let kept = HeaderValue::from_static("client-id-1");
        assert_eq!(from_request(Some(&kept)), "client-id-1");
        let odd = HeaderValue::from_static("two words");
        assert_eq!(from_request(Some(&odd)).len(), 32);
        assert_eq!(from_request(None).len(), 32);
    }
}
