//! The one place that turns a refusal or a failure into an HTTP response: status code, a short
//! body that never carries internal detail, and the headers every such answer gets.

use std::borrow::Cow;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::{Error, ErrorSource, ErrorType};

use crate::observe::request_id::{self, REQUEST_ID_HEADER};
use crate::security::cors::CorsHeaders;
use crate::security::{Refusal, RouteGuard};

/// A response made by the proxy itself (not relayed from a backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub body: Cow<'static, str>,
    pub location: Option<String>,
    /// Close the client connection after answering (framing errors).
    pub close: bool,
    /// `Retry-After` seconds (overload refusals).
    pub retry_after: Option<u64>,
    /// The body is JSON (OpenAI's error format on API routes), not text.
    pub json: bool,
    /// More headers: CORS on a route with `cors`, a Basic challenge.
    pub headers: CorsHeaders,
}

impl LocalResponse {
    /// A plain status answer with the standard short body for it.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: Cow::Borrowed(body_for(status)),
            location: None,
            close: status == 400 || status == 413 || status == 431,
            retry_after: None,
            json: false,
            headers: Vec::new(),
        }
    }

    /// The same answer with a `Retry-After` hint.
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    /// A JSON answer (OpenAI error bodies, the merged model list).
    pub fn json(status: u16, body: String) -> Self {
        Self {
            status,
            body: Cow::Owned(body),
            location: None,
            close: status == 400 || status == 413 || status == 411,
            retry_after: None,
            json: true,
            headers: Vec::new(),
        }
    }

    /// A permanent redirect keeping the method (308).
    pub fn redirect(location: String) -> Self {
        Self {
            status: 308,
            body: Cow::Borrowed(body_for(308)),
            location: Some(location),
            close: false,
            retry_after: None,
            json: false,
            headers: Vec::new(),
        }
    }
}

/// The answer to a refusal by `guard`'s checks, carrying the route's CORS headers (`cors`) so a
/// browser page can read the status, and a Basic challenge for `basic_auth`.
pub fn refusal_for(
    guard: Option<&RouteGuard>,
    api: bool,
    refused: Option<Refusal>,
    cors: CorsHeaders,
) -> LocalResponse {
    let mut response = refusal(refused, api);
    response.headers = cors;
    if let (Some(Refusal::BasicAuth), Some(basic)) = (refused, guard.and_then(|g| g.basic_auth())) {
        if let Ok(challenge) = basic.challenge().to_str() {
            response
                .headers
                .push(("www-authenticate", challenge.to_string()));
        }
    }
    response
}

/// The answer to a request the edge checks refused: 401 (API key), 403 (access lists), 429 (rate
/// limit). On API routes (`api_keys`) the body is OpenAI's error JSON, which SDKs parse.
pub fn refusal(refusal: Option<Refusal>, api: bool) -> LocalResponse {
    let mut response = match refusal {
        Some(Refusal::RateLimited { retry_after } | Refusal::QuotaExceeded { retry_after }) => {
            LocalResponse::status(429).with_retry_after(Some(retry_after))
        }
        Some(Refusal::Unauthorized | Refusal::BasicAuth) => LocalResponse::status(401),
        Some(Refusal::TooLarge) => LocalResponse::status(413),
        Some(Refusal::Forbidden) | None => LocalResponse::status(403),
    };
    if api && refusal != Some(Refusal::BasicAuth) {
        response.json = true;
        response.body = Cow::Borrowed(openai_error_body(response.status));
        if matches!(refusal, Some(Refusal::QuotaExceeded { .. })) {
            response.body = Cow::Borrowed(INSUFFICIENT_QUOTA_BODY);
        }
    }
    response
}

/// OpenAI's error object for a key that spent its token quota.
pub const INSUFFICIENT_QUOTA_BODY: &str = "{\"error\":{\"message\":\"You exceeded your current quota for this API key.\",\"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}\n";

/// OpenAI's error object for a refusal status.
pub fn openai_error_body(status: u16) -> &'static str {
    match status {
        401 => "{\"error\":{\"message\":\"Incorrect or missing API key.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}\n",
        413 => "{\"error\":{\"message\":\"The request body is too large.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"request_too_large\"}}\n",
        429 => "{\"error\":{\"message\":\"Rate limit reached; retry after the time in the Retry-After header.\",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n",
        400 => "{\"error\":{\"message\":\"The request could not be read.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}\n",
        411 => "{\"error\":{\"message\":\"Request bodies over 64 KiB must carry a Content-Length header.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"length_required\"}}\n",
        502 => "{\"error\":{\"message\":\"The inference server could not be reached.\",\"type\":\"server_error\",\"param\":null,\"code\":\"bad_gateway\"}}\n",
        503 => "{\"error\":{\"message\":\"Every server for this model is busy or unavailable; retry after the time in the Retry-After header.\",\"type\":\"server_error\",\"param\":null,\"code\":\"overloaded\"}}\n",
        504 => "{\"error\":{\"message\":\"The inference server did not answer in time.\",\"type\":\"server_error\",\"param\":null,\"code\":\"timeout\"}}\n",
        _ => "{\"error\":{\"message\":\"Access to this endpoint is not allowed from your address.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"forbidden\"}}\n",
    }
}

/// Short bodies: what happened, in words, and nothing about our internals.
pub fn body_for(status: u16) -> &'static str {
    match status {
        308 => "Permanent Redirect\n",
        400 => "Bad Request\n",
        401 => "Unauthorized\n",
        403 => "Forbidden\n",
        404 => "Not Found: no route for this request\n",
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

/// The status code for a proxying failure; 0 when the client is already gone.
pub fn status_for_error(e: &Error) -> u16 {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(code)) => *code,
        (_, CustomCode(_, code)) => *code,
        (ErrorSource::Upstream, ConnectTimedout | ReadTimedout | WriteTimedout) => 504,
        (ErrorSource::Upstream, TLSHandshakeTimedout) => 504,
        (ErrorSource::Upstream, _) => 502,
        (ErrorSource::Downstream, ReadTimedout) => 408,
        (ErrorSource::Downstream, WriteError | ReadError | ConnectionClosed | WriteTimedout) => 0,
        (ErrorSource::Downstream, _) => 400,
        (ErrorSource::Internal | ErrorSource::Unset, ConnectTimedout) => 504,
        (ErrorSource::Internal | ErrorSource::Unset, ConnectRefused | ConnectNoRoute) => 502,
        (ErrorSource::Internal | ErrorSource::Unset, _) => 500,
    }
}

/// Writes a local response. Errors writing to a vanished client are returned to the caller.
pub async fn send(session: &mut Session, response: &LocalResponse) -> Result<()> {
    let body = match &response.body {
        Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
        Cow::Owned(text) => Bytes::from(text.clone()),
    };
    let mut header = ResponseHeader::build(response.status, Some(5))?;
    let content_type = if response.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    header.insert_header(http::header::CONTENT_TYPE, content_type)?;
    let challenged = response
        .headers
        .iter()
        .any(|(n, _)| *n == "www-authenticate");
    if response.status == 401 && !challenged {
        header.insert_header(http::header::WWW_AUTHENTICATE, "Bearer")?;
    }
    for (name, value) in &response.headers {
        if *name == "vary" {
            header.append_header(*name, value.as_str())?;
        } else {
            header.insert_header(*name, value.as_str())?;
        }
    }
    header.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    // The request id (set on the request by the request filter), when it is a sane one.
    let request_id = session.req_header().headers.get(REQUEST_ID_HEADER);
    if let Some(id) = request_id.filter(|id| request_id::sanitize(id.as_bytes()).is_some()) {
        header.insert_header(REQUEST_ID_HEADER, id.clone())?;
    }
    if let Some(location) = &response.location {
        header.insert_header(http::header::LOCATION, location.as_str())?;
    }
    if let Some(seconds) = response.retry_after {
        header.insert_header(http::header::RETRY_AFTER, seconds.to_string())?;
    }
    if response.close {
        header.insert_header(http::header::CONNECTION, "close")?;
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(source: ErrorSource, etype: ErrorType) -> Box<Error> {
        match source {
            ErrorSource::Upstream => Error::new_up(etype),
            ErrorSource::Downstream => Error::new_down(etype),
            _ => Error::new_in(etype),
        }
    }

    #[test]
    fn upstream_failures_map_to_gateway_codes() {
        assert_eq!(
            status_for_error(&err(ErrorSource::Upstream, ErrorType::ConnectRefused)),
            502
        );
        assert_eq!(
            status_for_error(&err(ErrorSource::Upstream, ErrorType::ReadTimedout)),
            504
        );
        assert_eq!(
            status_for_error(&err(ErrorSource::Upstream, ErrorType::ConnectTimedout)),
            504
        );
        assert_eq!(
            status_for_error(&err(ErrorSource::Upstream, ErrorType::H1Error)),
            502
        );
    }

    #[test]
    fn downstream_failures_map_to_client_codes_or_silence() {
        assert_eq!(
            status_for_error(&err(ErrorSource::Downstream, ErrorType::InvalidHTTPHeader)),
            400
        );
        assert_eq!(
            status_for_error(&err(ErrorSource::Downstream, ErrorType::ConnectionClosed)),
            0
        );
        assert_eq!(
            status_for_error(&err(ErrorSource::Downstream, ErrorType::ReadTimedout)),
            408
        );
        assert_eq!(
            status_for_error(&Error::new(ErrorType::HTTPStatus(503))),
            503
        );
    }

    #[test]
    fn bodies_leak_nothing_internal() {
        for code in [400, 401, 403, 404, 408, 429, 431, 502, 503, 504, 599] {
            let body = body_for(code);
            assert!(!body.contains("127.0.0.1") && !body.contains("Error:") && body.len() < 80);
        }
    }
}
