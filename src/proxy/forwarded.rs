//! The forwarding headers a backend sees: X-Forwarded-For (appended), X-Forwarded-Proto,
//! X-Forwarded-Host, X-Real-IP and X-Client-IP (as OpenWebUI's HAProxy example sets them).

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const X_REAL_IP: &str = "x-real-ip";
pub const X_CLIENT_IP: &str = "x-client-ip";

/// The header values to set on the upstream request.
#[derive(Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub forwarded_for: HeaderValue,
    pub proto: HeaderValue,
    pub host: Option<HeaderValue>,
    pub client_ip: HeaderValue,
}

/// Computes the forwarding headers from the incoming ones, the client address, whether the
/// request came over TLS and the original host.
pub fn forwarded(
    incoming: &HeaderMap,
    client: Option<IpAddr>,
    tls: bool,
    host: Option<&str>,
) -> Forwarded {
    let ip = client
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    let previous: Vec<&str> = incoming
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let chain = if previous.is_empty() {
        ip.clone()
    } else {
        format!("{}, {ip}", previous.join(", "))
    };
    let client_ip = HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown"));
    Forwarded {
        forwarded_for: HeaderValue::from_str(&chain).unwrap_or_else(|_| client_ip.clone()),
        proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
        host: host.and_then(|h| HeaderValue::from_str(h).ok()),
        client_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_to_existing_chain() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.2.2.2 "));
        let f = forwarded(
            &h,
            Some("127.0.0.9".parse().expect("ip")),
            true,
            Some("a.test"),
        );
        assert_eq!(f.forwarded_for, "10.1.1.1, 10.2.2.2, 127.0.0.9");
        assert_eq!(f.proto, "https");
        assert_eq!(f.host, Some(HeaderValue::from_static("a.test")));
        assert_eq!(f.client_ip, "127.0.0.9");
    }

    #[test]
    fn starts_a_chain_and_marks_plain_http() {
        let f = forwarded(
            &HeaderMap::new(),
            Some("::1".parse().expect("ip")),
            false,
            None,
        );
        assert_eq!(f.forwarded_for, "::1");
        assert_eq!(f.proto, "http");
        assert_eq!(f.host, None);
    }
}
