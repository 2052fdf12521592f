//! A small HTTPS client for the DNS providers' APIs (system roots, ring; plain http only for
//! local stand-ins): one request, one bounded wait, status and body back.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::DnsError;

/// How long one API call may take.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP(S) client shared by one provider.
#[derive(Clone)]
pub struct ApiClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A response: status code and body.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Bytes,
}

impl ApiClient {
    pub fn new() -> Result<Self, DnsError> {
        crate::tls::install_default_provider();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(DnsError::TlsRoots)?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends one request; `headers` are (name, value) pairs.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<ApiResponse, DnsError> {
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|source| DnsError::Request {
                url: redact(url).to_string(),
                source,
            })?;
        let what = || format!("{method} {}", redact(url));
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|source| DnsError::Http {
                    what: what(),
                    source,
                })?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|source| DnsError::Body {
                    what: what(),
                    source,
                })?
                .to_bytes();
            Ok(ApiResponse { status, body })
        };
        tokio::time::timeout(DEFAULT_API_TIMEOUT, call)
            .await
            .map_err(|_| DnsError::Timeout {
                what: format!("{}: no answer", what()),
                after: DEFAULT_API_TIMEOUT,
            })?
    }
}

/// A URL without its query string (which may carry credentials) for messages.
pub fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Percent-encodes a form or query component.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `a=b&c=d` with each part encoded.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            form(&[("a b", "x&y=z"), ("j", "{\"k\":1}")]),
            "a%20b=x%26y%3Dz&j=%7B%22k%22%3A1%7D"
        );
        assert_eq!(redact("https://x/y?token=s"), "https://x/y");
    }
}
