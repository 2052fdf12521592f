//! The one place that writes a response made by ferrogate itself (not relayed from a backend):
//! edge refusals, failures ([`EdgeError`]), redirects, ACME answers, CORS preflights, the merged
//! model list and the answers of routes that answer themselves (`redirect`, `respond`, with the
//! route's `headers.response`). Bodies are short and never carry internal detail.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{
    CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;

use super::error::EdgeError;
use crate::observe::request_id::REQUEST_ID_HEADER;
use crate::routing::answer::{FixedAnswer, RedirectAnswer};
use crate::routing::headers::{HeaderRuleSet, TemplateVars};
use crate::security::cors::CorsHeaders;
use crate::security::{Refusal, RouteGuard};

/// What a local response's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Text,
    /// OpenAI's error format on API routes, the merged model list.
    Json,
    /// No body at all (a CORS preflight).
    Empty,
    /// A route's `respond` with its own `content_type` (or none).
    Fixed,
}

/// A response made by the proxy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub body: Bytes,
    pub kind: BodyKind,
    /// The `Content-Type` of a [`BodyKind::Fixed`] body.
    pub content_type: Option<HeaderValue>,
    pub location: Option<HeaderValue>,
    /// Close the client connection after answering (framing errors, unread bodies).
    pub close: bool,
    /// `Retry-After` seconds (overload refusals).
    pub retry_after: Option<u64>,
    /// More headers: CORS on a route with `cors`, a Basic challenge.
    pub headers: CorsHeaders,
}

impl LocalResponse {
    /// A plain status answer with the standard short body for it.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: Bytes::from_static(body_for(status).as_bytes()),
            kind: BodyKind::Text,
            content_type: None,
            location: None,
            close: matches!(status, 400 | 405 | 413 | 431),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// A short text answer (an HTTP-01 key authorization).
    pub fn text(status: u16, text: &str) -> Self {
        Self {
            body: Bytes::copy_from_slice(text.as_bytes()),
            ..Self::status(status)
        }
    }

    /// A JSON answer (OpenAI error bodies, the merged model list).
    pub fn json(status: u16, body: String) -> Self {
        Self {
            body: Bytes::from(body),
            kind: BodyKind::Json,
            ..Self::status(status)
        }
    }

    /// A permanent redirect keeping the method (308).
    pub fn redirect(location: String) -> Self {
        Self {
            location: HeaderValue::try_from(location).ok(),
            ..Self::status(308)
        }
    }

    /// A route's `redirect` for one request; 400 when the request's own host or path cannot be
    /// written into its `Location`.
    pub fn route_redirect(redirect: &RedirectAnswer, vars: &TemplateVars<'_>) -> Self {
        let Some(location) = redirect.location(vars) else {
            return Self::status(400);
        };
        let status = redirect.status.as_u16();
        Self {
            location: Some(location),
            body: Bytes::from_static(body_for(status).as_bytes()),
            ..Self::status(status)
        }
    }

    /// A route's `respond`.
    pub fn fixed(answer: &FixedAnswer) -> Self {
        Self {
            body: answer.body.clone(),
            kind: BodyKind::Fixed,
            content_type: answer.content_type.clone(),
            ..Self::status(answer.status.as_u16())
        }
    }

    /// The answer to a CORS preflight: 204 with the route's CORS headers (none when the origin,
    /// method or a requested header is not allowed, which the browser takes as a refusal).
    pub fn preflight(headers: CorsHeaders) -> Self {
        Self {
            body: Bytes::new(),
            kind: BodyKind::Empty,
            headers,
            ..Self::status(204)
        }
    }

    /// The same answer with a `Retry-After` hint.
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }
}

/// The answer to a failed exchange (`None` when the client is gone): the status, OpenAI's error
/// JSON on API routes, `Retry-After` for overload; the connection closes after it.
pub fn for_error(error: &EdgeError, api: bool) -> Option<LocalResponse> {
    let status = error.status()?;
    let mut response = LocalResponse::status(status).with_retry_after(error.retry_after());
    if api {
        response.kind = BodyKind::Json;
        response.body = Bytes::from_static(openai_error_body(status).as_bytes());
    }
    response.close = true;
    Some(response)
}

/// The answer to a refusal by `guard`'s checks, carrying the route's CORS headers (`cors`) so a
/// browser page can read the status, and a Basic challenge for `basic_auth`.
pub fn refusal_for(
    guard: Option<&RouteGuard>,
    api: bool,
    refused: Refusal,
    cors: CorsHeaders,
) -> LocalResponse {
    let mut response = refusal(refused, api);
    response.headers = cors;
    if let (Refusal::BasicAuth, Some(basic)) = (refused, guard.and_then(|g| g.basic_auth())) {
        if let Ok(challenge) = basic.challenge().to_str() {
            response
                .headers
                .push(("www-authenticate", challenge.to_string()));
        }
    }
    response
}

/// The answer to a request the edge checks refused: 401 (API key), 403 (access lists), 413
/// (declared body size), 429 (rate limit, quota). On API routes (`api_keys`) the body is OpenAI's
/// error JSON, which SDKs parse.
pub fn refusal(refusal: Refusal, api: bool) -> LocalResponse {
    let mut response = match refusal {
        Refusal::RateLimited { retry_after } | Refusal::QuotaExceeded { retry_after } => {
            LocalResponse::status(429).with_retry_after(Some(retry_after))
        }
        Refusal::Unauthorized | Refusal::BasicAuth => LocalResponse::status(401),
        Refusal::TooLarge => LocalResponse::status(413),
        Refusal::Forbidden => LocalResponse::status(403),
    };
    if api && refusal != Refusal::BasicAuth {
        response.kind = BodyKind::Json;
        response.body = Bytes::from_static(
            match refusal {
                Refusal::QuotaExceeded { .. } => INSUFFICIENT_QUOTA_BODY,
                _ => openai_error_body(response.status),
            }
            .as_bytes(),
        );
    }
    response
}

/// OpenAI's error object for a key that spent its token quota.
pub const INSUFFICIENT_QUOTA_BODY: &str = "{\"error\":{\"message\":\"You exceeded your current quota for this API key.\",\"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}\n";

/// OpenAI's error object for a refusal or failure status.
pub fn openai_error_body(status: u16) -> &'static str {
    match status {
        401 => "{\"error\":{\"message\":\"Incorrect or missing API key.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}\n",
        413 => "{\"error\":{\"message\":\"The request body is too large.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"request_too_large\"}}\n",
        429 => "{\"error\":{\"message\":\"Rate limit reached; retry after the time in the Retry-After header.\",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n",
        400 | 405 | 408 | 431 => "{\"error\":{\"message\":\"The request could not be read.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}\n",
        502 => "{\"error\":{\"message\":\"The inference server could not be reached.\",\"type\":\"server_error\",\"param\":null,\"code\":\"bad_gateway\"}}\n",
        503 => "{\"error\":{\"message\":\"Every server for this model is busy or unavailable; retry after the time in the Retry-After header.\",\"type\":\"server_error\",\"param\":null,\"code\":\"overloaded\"}}\n",
        504 => "{\"error\":{\"message\":\"The inference server did not answer in time.\",\"type\":\"server_error\",\"param\":null,\"code\":\"timeout\"}}\n",
        _ => "{\"error\":{\"message\":\"Access to this endpoint is not allowed from your address.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"forbidden\"}}\n",
    }
}

/// Short bodies: what happened, in words, and nothing about our internals.
pub fn body_for(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently\n",
        302 => "Found\n",
        303 => "See Other\n",
        307 => "Temporary Redirect\n",
        308 => "Permanent Redirect\n",
        400 => "Bad Request\n",
        401 => "Unauthorized\n",
        403 => "Forbidden\n",
        404 => "Not Found: no route for this request\n",
        405 => "Method Not Allowed\n",
        408 => "Request Timeout\n",
        413 => "Payload Too Large\n",
        421 => "Misdirected Request\n",
        429 => "Too Many Requests\n",
        431 => "Request Header Fields Too Large\n",
        502 => "Bad Gateway: the backend could not be reached\n",
        503 => "Service Unavailable: no backend available\n",
        504 => "Gateway Timeout: the backend did not answer in time\n",
        _ => "Error\n",
    }
}

/// What of the request a local answer depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    /// A HEAD request: the head only.
    pub head_only: bool,
    /// The request's id, echoed on the answer.
    pub request_id: Option<&'a HeaderValue>,
    /// The route's `headers.response`, applied last (routes that answer themselves).
    pub rules: Option<(&'a HeaderRuleSet, TemplateVars<'a>)>,
}

static TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
static CLOSE: HeaderValue = HeaderValue::from_static("close");
static BEARER: HeaderValue = HeaderValue::from_static("Bearer");

/// The response head for `response`.
pub fn head(response: &LocalResponse, asked: Asked<'_>) -> pingora::Result<ResponseHeader> {
    let mut header = ResponseHeader::build(response.status, Some(6 + response.headers.len()))?;
    match (response.kind, &response.content_type) {
        (BodyKind::Text, _) => header.insert_header(CONTENT_TYPE, TEXT.clone())?,
        (BodyKind::Json, _) => header.insert_header(CONTENT_TYPE, JSON.clone())?,
        (BodyKind::Fixed, Some(content_type)) => {
            header.insert_header(CONTENT_TYPE, content_type.clone())?
        }
        (BodyKind::Empty | BodyKind::Fixed, _) => {}
    }
    let challenged = response
        .headers
        .iter()
        .any(|(n, _)| *n == "www-authenticate");
    if response.status == 401 && !challenged {
        header.insert_header(WWW_AUTHENTICATE, BEARER.clone())?;
    }
    for (name, value) in &response.headers {
        if *name == "vary" {
            header.append_header(*name, value.as_str())?;
        } else {
            header.insert_header(*name, value.as_str())?;
        }
    }
    // RFC 9110 §8.6: no Content-Length on a 204.
    if response.status != 204 {
        header.insert_header(CONTENT_LENGTH, HeaderValue::from(response.body.len()))?;
    }
    header.insert_header(CACHE_CONTROL, NO_STORE.clone())?;
    if let Some(id) = asked.request_id {
        header.insert_header(REQUEST_ID_HEADER, id.clone())?;
    }
    if let Some(location) = &response.location {
        header.insert_header(LOCATION, location.clone())?;
    }
    if let Some(seconds) = response.retry_after {
        header.insert_header(RETRY_AFTER, HeaderValue::from(seconds))?;
    }
    if response.close {
        header.insert_header(CONNECTION, CLOSE.clone())?;
    }
    if let Some((rules, vars)) = &asked.rules {
        let mut parts = header.as_owned_parts();
        rules.apply(&mut parts.headers, vars);
        header = ResponseHeader::from(parts);
    }
    Ok(header)
}

/// Writes `response` to the client. Errors writing to a vanished client are returned.
pub fn send<'a>(
    session: &'a mut ServerSession,
    response: LocalResponse,
    asked: Asked<'_>,
) -> BoxFuture<'a, pingora::Result<()>> {
    match head(&response, asked) {
        Ok(header) => write(session, header, response, asked.head_only),
        Err(error) => Box::pin(std::future::ready(Err(error))),
    }
}

/// Writes `response` with its head already built ([`head`]); `head_only` for a HEAD request.
/// Boxed: the writes of a local answer are a future of over a kilobyte, which every request's
/// state would otherwise carry, and a local answer is not the path a proxied request takes.
pub fn write(
    session: &mut ServerSession,
    header: ResponseHeader,
    response: LocalResponse,
    head_only: bool,
) -> BoxFuture<'_, pingora::Result<()>> {
    Box::pin(async move {
        let header = Box::new(header);
        if response.close {
            session.set_keepalive(None);
        }
        let body = response.body;
        if head_only || body.is_empty() {
            if let ServerSession::H2(h2) = session {
                // The stream ends on the HEADERS frame.
                return h2.write_response_header(header, true);
            }
            session.write_response_header(header).await?;
            return session.finish_body().await;
        }
        session.write_response_header(header).await?;
        session.write_response_body(body, true).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(header: &'a ResponseHeader, name: &str) -> Option<&'a str> {
        header.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn bodies_leak_nothing_internal() {
        for code in [400, 401, 403, 404, 405, 408, 429, 431, 502, 503, 504, 599] {
            let body = body_for(code);
            assert!(!body.contains("127.0.0.1") && !body.contains("Error:") && body.len() < 80);
        }
    }

    #[test]
    fn errors_answer_with_their_status_and_close() {
        let overloaded = EdgeError::Overloaded { retry_after: 2 };
        let r = for_error(&overloaded, false).expect("an answer");
        let id = HeaderValue::from_static("abc");
        let asked = Asked {
            head_only: false,
            request_id: Some(&id),
            rules: None,
        };
        let h = head(&r, asked).expect("head");
        assert_eq!(h.status.as_u16(), 503);
        assert_eq!(get(&h, "retry-after"), Some("2"));
        assert_eq!(get(&h, "connection"), Some("close"));
        assert_eq!(get(&h, "x-request-id"), Some("abc"));
        assert_eq!(get(&h, "content-type"), Some("text/plain; charset=utf-8"));
        let api = for_error(&overloaded, true).expect("an answer");
        assert_eq!(api.kind, BodyKind::Json);
        assert!(String::from_utf8_lossy(&api.body).contains("overloaded"));
        let gone = EdgeError::ClientGone(pingora::ErrorType::ConnectionClosed);
        assert!(for_error(&gone, false).is_none());
    }

    #[test]
    fn preflights_have_no_body_headers_and_refusals_challenge() {
        let pre = LocalResponse::preflight(vec![("access-control-allow-origin", "*".into())]);
        let h = head(&pre, Asked::default()).expect("head");
        assert_eq!(h.status.as_u16(), 204);
        assert_eq!(get(&h, "content-length"), None);
        assert_eq!(get(&h, "content-type"), None);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        let unauthorized = refusal(Refusal::Unauthorized, true);
        let h = head(&unauthorized, Asked::default()).expect("head");
        assert_eq!(get(&h, "www-authenticate"), Some("Bearer"));
        assert_eq!(get(&h, "content-type"), Some("application/json"));
        let quota = refusal(Refusal::QuotaExceeded { retry_after: 9 }, true);
        assert_eq!(quota.body, INSUFFICIENT_QUOTA_BODY);
        assert_eq!(quota.retry_after, Some(9));
    }
}
