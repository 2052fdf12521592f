//! CORS for a route: which origins, methods and headers a browser may use, whether credentials
//! are allowed, and the headers of a preflight answer and of an actual response. Pure.

use crate::config::model::Cors;

/// The CORS headers for a response, as (name, value) pairs.
pub type CorsHeaders = Vec<(&'static str, String)>;

/// Whether `origin` is allowed by `cors`.
fn origin_allowed(cors: &Cors, origin: &str) -> bool {
    cors.origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
}

/// `Access-Control-Allow-Origin` (+ credentials, Vary) for an allowed origin.
fn allow_origin(cors: &Cors, origin: &str) -> CorsHeaders {
    let wildcard = cors.origins.iter().any(|o| o == "*");
    let mut out = Vec::with_capacity(3);
    if wildcard && !cors.credentials {
        out.push(("access-control-allow-origin", "*".to_string()));
    } else {
        // Credentials never go with `*`: the origin is echoed and caches keyed on it.
        out.push(("access-control-allow-origin", origin.to_string()));
        out.push(("vary", "Origin".to_string()));
    }
    if cors.credentials {
        out.push(("access-control-allow-credentials", "true".to_string()));
    }
    out
}

/// The headers for a preflight (`OPTIONS` with `Access-Control-Request-Method`); empty when the
/// origin, method or a requested header is not allowed (the browser then refuses the request).
pub fn preflight(
    cors: &Cors,
    origin: &str,
    method: &str,
    request_headers: Option<&str>,
) -> CorsHeaders {
    if !origin_allowed(cors, origin) {
        return Vec::new();
    }
    if !cors.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
        return Vec::new();
    }
    let requested: Vec<&str> = request_headers
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let allowed = |h: &str| {
        cors.headers
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(h))
    };
    if !requested.iter().all(|h| allowed(h)) {
        return Vec::new();
    }
    let mut out = allow_origin(cors, origin);
    out.push(("access-control-allow-methods", cors.methods.join(", ")));
    if !requested.is_empty() {
        out.push(("access-control-allow-headers", requested.join(", ")));
    }
    out.push(("access-control-max-age", cors.max_age.as_secs().to_string()));
    out
}

/// The headers added to an actual (non-preflight) response for a request from `origin`.
pub fn actual(cors: &Cors, origin: &str) -> CorsHeaders {
    if origin_allowed(cors, origin) {
        allow_origin(cors, origin)
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors {
            origins: origins.iter().map(|s| s.to_string()).collect(),
            methods: vec!["GET".into(), "POST".into()],
            headers: vec!["content-type".into(), "authorization".into()],
            credentials,
            max_age: Duration::from_secs(600),
        }
    }

    fn get<'a>(h: &'a CorsHeaders, name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn preflight_allows_listed_origin_method_and_headers() {
        let c = cors(&["https://app.example"], true);
        let h = preflight(
            &c,
            "https://app.example",
            "POST",
            Some("Content-Type, Authorization"),
        );
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("GET, POST"));
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("Content-Type, Authorization")
        );
        assert_eq!(get(&h, "access-control-max-age"), Some("600"));
        assert_eq!(get(&h, "vary"), Some("Origin"));
    }

    #[test]
    fn preflight_refuses_what_is_not_listed() {
        let c = cors(&["https://app.example"], false);
        assert!(preflight(&c, "https://evil.example", "POST", None).is_empty());
        assert!(preflight(&c, "https://app.example", "DELETE", None).is_empty());
        assert!(preflight(&c, "https://app.example", "POST", Some("x-secret")).is_empty());
    }

    #[test]
    fn wildcard_without_credentials_answers_star() {
        let c = cors(&["*"], false);
        assert_eq!(
            get(
                &actual(&c, "https://any.example"),
                "access-control-allow-origin"
            ),
            Some("*")
        );
        let c = cors(&["*"], true);
        let h = actual(&c, "https://any.example");
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://any.example")
        );
        assert!(actual(&cors(&["https://a.example"], false), "https://b.example").is_empty());
    }
}
