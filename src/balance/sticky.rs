//! Sticky-session cookies, HAProxy `cookie NAME insert indirect nocache` style: the proxy names
//! the server by an opaque stable id, reads it back from the request, removes it before the
//! request reaches the backend, and marks responses that set it as private.

use std::time::Duration;

/// A server id as written in a cookie: 16 lowercase hex digits.
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses a cookie value written by [`format_id`].
pub fn parse_id(text: &str) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The value of cookie `name` among `Cookie` header values (`a=1; b=2`), first occurrence.
pub fn find_cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// A `Cookie` header value without cookie `name`; `None` when nothing else is left.
pub fn strip_cookie(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split_once('=').map_or(*pair, |(n, _)| n) != name)
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("; "))
    }
}

/// The `Set-Cookie` value pinning a client to server `id`.
pub fn set_cookie(name: &str, id: u64, ttl: Option<Duration>, secure: bool) -> String {
    let mut cookie = format!("{name}={}; Path=/", format_id(id));
    if let Some(ttl) = ttl {
        cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    cookie.push_str("; HttpOnly; SameSite=Lax");
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// `nocache`: a response that sets the sticky cookie must not be stored by shared caches. The
/// `Cache-Control` value to use given the backend's (`None` = keep the backend's as it is).
pub fn private_cache_control(existing: Option<&str>) -> Option<String> {
    let Some(existing) = existing else {
        return Some("private".into());
    };
    let directives: Vec<&str> = existing
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let already = directives.iter().any(|d| {
        let name = d.split('=').next().unwrap_or(d).to_ascii_lowercase();
        name == "private" || name == "no-store"
    });
    if already {
        return None;
    }
    let mut out = vec!["private"];
    out.extend(directives.into_iter().filter(|d| {
        let name = d.split('=').next().unwrap_or(d).to_ascii_lowercase();
        name != "public" && name != "s-maxage"
    }));
    Some(out.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(format_id(0xab), "00000000000000ab");
        assert_eq!(parse_id(&format_id(u64::MAX - 3)), Some(u64::MAX - 3));
        assert_eq!(parse_id("xyz"), None);
        assert_eq!(parse_id("00000000000000zz"), None);
    }

    #[test]
    fn finds_cookies_across_headers() {
        let headers = ["a=1; fg_srv=00000000000000ab", "fg_srv=ignored"];
        assert_eq!(
            find_cookie(headers.iter().copied(), "fg_srv"),
            Some("00000000000000ab")
        );
        assert_eq!(find_cookie(["a=1;b=2"], "b"), Some("2"));
        assert_eq!(find_cookie(["xfg_srv=1"], "fg_srv"), None);
        assert_eq!(find_cookie(["c=\"q\""], "c"), Some("q"));
    }

    #[test]
    fn strips_only_the_sticky_cookie() {
        assert_eq!(
            strip_cookie("a=1; fg_srv=x; b=2", "fg_srv").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookie("fg_srv=x", "fg_srv"), None);
        assert_eq!(
            strip_cookie("fg_srv_other=1", "fg_srv").as_deref(),
            Some("fg_srv_other=1")
        );
    }

    #[test]
    fn set_cookie_has_every_attribute() {
        assert_eq!(
            set_cookie("fg_srv", 1, Some(Duration::from_secs(3 * 3600)), true),
            "fg_srv=0000000000000001; Path=/; Max-Age=10800; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            set_cookie("s", 2, None, false),
            "s=0000000000000002; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn nocache_marks_responses_private() {
        assert_eq!(private_cache_control(None).as_deref(), Some("private"));
        assert_eq!(private_cache_control(Some("no-store")), None);
        assert_eq!(private_cache_control(Some("private, max-age=5")), None);
        assert_eq!(
            private_cache_control(Some("public, max-age=60, s-maxage=600")).as_deref(),
            Some("private, max-age=60")
        );
    }
}
