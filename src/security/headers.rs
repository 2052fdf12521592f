//! `security_headers: true` on a route: the response headers that close common browser holes
//! (MIME sniffing, framing by other sites, full URLs leaking in Referer), each added only when the
//! backend did not set its own.

use pingora::http::ResponseHeader;
use pingora::prelude::*;

use super::RouteGuard;

/// The headers and their values, in the order they are added.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

/// The security headers `response` lacks, when the route asks for them.
pub fn missing(
    guard: Option<&RouteGuard>,
    response: &http::HeaderMap,
) -> Vec<(&'static str, &'static str)> {
    if !guard.is_some_and(|g| g.security_headers()) {
        return Vec::new();
    }
    SECURITY_HEADERS
        .iter()
        .filter(|(name, _)| !response.contains_key(*name))
        .copied()
        .collect()
}

/// Adds the missing security headers to `response`.
pub fn add(guard: Option<&RouteGuard>, response: &mut ResponseHeader) -> Result<()> {
    for (name, value) in missing(guard, &response.headers) {
        response.insert_header(name, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::RouteSecurity;

    #[test]
    fn only_headers_the_backend_did_not_set_are_added() {
        let on = RouteSecurity {
            security_headers: true,
            ..Default::default()
        };
        let guard = RouteGuard::standalone("headers-test", &on).unwrap();
        let mut backend = http::HeaderMap::new();
        backend.insert("x-frame-options", "DENY".parse().unwrap());
        let names: Vec<_> = missing(Some(&guard), &backend)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["x-content-type-options", "referrer-policy"]);
        assert!(missing(None, &backend).is_empty());
    }
}
