//! `routes[].rate_limit`, `allow`, `deny`, `cors`, `max_body` and `security_headers`: rate syntax,
//! key names, CIDR lists, origins and sizes.

use std::time::Duration;

use super::Checker;
use crate::config::model::{Cidr, Cors, RateKey, RateLimit, RouteSecurity};
use crate::config::raw::{RawCors, RawRateLimit, RawRoute};
use crate::config::spans::child_index;

/// Methods a CORS policy allows when it lists none.
const DEFAULT_CORS_METHODS: &[&str] = &["GET", "HEAD", "POST"];
/// How long browsers cache a preflight answer unless `max_age` says otherwise.
const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// The burst of a rate limit that gives none: the per-period count, at least 1.
const MIN_BURST: u32 = 1;

impl Checker {
    /// A size at `path`: bytes as a number, or text such as `16MB` (the error is recorded).
    pub(super) fn size(&mut self, path: &str, value: &serde_yaml::Value) -> Option<u64> {
        let text = match value {
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s.clone(),
            _ => String::new(),
        };
        match parse_size(&text) {
            Ok(size) => Some(size),
            Err(message) => {
                self.at_value(path, message);
                None
            }
        }
    }

    /// The security settings of the route at `path` but for `api_keys` and `basic_auth`, whose
    /// files are read by `resolve`.
    pub(super) fn route_security(&mut self, path: &str, raw: &RawRoute) -> RouteSecurity {
        let security = RouteSecurity {
            rate_limit: raw
                .rate_limit
                .as_ref()
                .and_then(|r| self.rate_limit(&format!("{path}.rate_limit"), r)),
            allow: self.cidr_list(&format!("{path}.allow"), raw.allow.as_deref()),
            deny: self.cidr_list(&format!("{path}.deny"), raw.deny.as_deref()),
            max_body: raw
                .max_body
                .as_ref()
                .and_then(|value| self.size(&format!("{path}.max_body"), value)),
            cors: raw
                .cors
                .as_ref()
                .and_then(|c| self.cors(&format!("{path}.cors"), c)),
            api_keys: None,
            basic_auth: None,
            security_headers: raw.security_headers.unwrap_or(false),
        };
        if raw.basic_auth.is_some() && raw.api_keys.is_some() {
            self.at_key(
                &format!("{path}.basic_auth"),
                "basic_auth and api_keys both read the Authorization header; use one per route",
            );
        }
        let per_key = matches!(
            &security.rate_limit,
            Some(RateLimit {
                key: RateKey::ApiKey,
                ..
            })
        );
        if per_key && raw.api_keys.is_none() {
            self.at_value(
                &format!("{path}.rate_limit.key"),
                "rate_limit key `api_key` needs `api_keys` on the same route",
            );
        }
        security
    }

    /// `trusted_proxies`: CIDR ranges.
    pub(super) fn trusted_proxies(&mut self, value: Option<&serde_yaml::Value>) -> Vec<Cidr> {
        let ranges = self.decode::<Vec<String>>(value, "trusted_proxies");
        self.cidr_list("trusted_proxies", ranges.as_deref())
    }

    fn cors(&mut self, path: &str, raw: &RawCors) -> Option<Cors> {
        let errors_before = self.error_count();
        if raw.origins.is_empty() {
            self.at_value(
                &format!("{path}.origins"),
                "name at least one origin (or `*`)",
            );
        }
        for (index, origin) in raw.origins.iter().enumerate() {
            let ok = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && !origin.ends_with('/'));
            if !ok {
                let message =
                    format!("origin `{origin}` must be `*` or scheme://host[:port] without a path");
                self.at_value(&child_index(&format!("{path}.origins"), index), message);
            }
        }
        let max_age = match raw
            .max_age
            .as_deref()
            .map(crate::config::duration::parse_duration)
        {
            None => DEFAULT_CORS_MAX_AGE,
            Some(Ok(age)) => age,
            Some(Err(message)) => {
                self.at_value(&format!("{path}.max_age"), message);
                DEFAULT_CORS_MAX_AGE
            }
        };
        let methods = raw
            .methods
            .clone()
            .unwrap_or_else(|| DEFAULT_CORS_METHODS.iter().map(|m| m.to_string()).collect());
        (self.error_count() == errors_before).then(|| Cors {
            origins: raw.origins.clone(),
            methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            headers: raw
                .headers
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            credentials: raw.credentials,
            max_age,
        })
    }

    fn rate_limit(&mut self, path: &str, raw: &RawRateLimit) -> Option<RateLimit> {
        let key = match raw
            .key
            .as_deref()
            .map(parse_key)
            .unwrap_or(Ok(RateKey::ClientIp))
        {
            Ok(key) => Some(key),
            Err(message) => {
                self.at_value(&format!("{path}.key"), message);
                None
            }
        };
        let rate = match parse_rate(&raw.rate) {
            Ok(rate) => Some(rate),
            Err(message) => {
                self.at_value(&format!("{path}.rate"), message);
                None
            }
        };
        if raw.burst == Some(0) {
            self.at_value(&format!("{path}.burst"), "burst must be at least 1");
            return None;
        }
        let (key, (count, period)) = (key?, rate?);
        Some(RateLimit {
            key,
            count,
            period,
            burst: raw.burst.unwrap_or(count.max(MIN_BURST)),
        })
    }

    pub(super) fn cidr_list(&mut self, path: &str, ranges: Option<&[String]>) -> Vec<Cidr> {
        let Some(ranges) = ranges else {
            return Vec::new();
        };
        if ranges.is_empty() {
            self.at_value(
                path,
                "an empty list has no effect; name CIDR ranges or remove the key",
            );
        }
        let mut parsed = Vec::with_capacity(ranges.len());
        for (index, text) in ranges.iter().enumerate() {
            match Cidr::parse(text) {
                Ok(cidr) => parsed.push(cidr),
                Err(message) => self.at_value(&child_index(path, index), message),
            }
        }
        parsed
    }
}

/// `client_ip` or `header:NAME`.
pub(super) fn parse_key(text: &str) -> Result<RateKey, String> {
    match text.split_once(':') {
        None if text == "client_ip" => Ok(RateKey::ClientIp),
        None if text == "api_key" => Ok(RateKey::ApiKey),
        Some(("header", name)) if valid_header_name(name) => {
            Ok(RateKey::Header(name.to_ascii_lowercase()))
        }
        _ => Err(format!(
            "unknown rate_limit key `{text}`: expected `client_ip`, `header:NAME` or `api_key`"
        )),
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

/// A size: bytes, or a number with `KB`, `MB`, `GB` (powers of 1024).
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size `{text}`: expected e.g. `1048576`, `512KB`, `10MB` or `1GB`");
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        _ => return Err(bad()),
    };
    number.checked_mul(scale).ok_or_else(bad)
}

/// `N/s`, `N/m` or `N/h` with N ≥ 1.
pub(super) fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("invalid rate `{text}`: expected e.g. `10/s`, `600/m` or `100/h`");
    let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!(
            "rate `{text}` lets nothing through; the count must be at least 1"
        ));
    }
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok((count, period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("10/s"), Ok((10, Duration::from_secs(1))));
        assert_eq!(parse_rate(" 600 / m "), Ok((600, Duration::from_secs(60))));
        assert_eq!(parse_rate("1/h"), Ok((1, Duration::from_secs(3600))));
        for bad in ["", "10", "10/d", "x/s", "-1/s", "0/s", "1.5/s"] {
            assert!(parse_rate(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512KB"), Ok(512 * 1024));
        assert_eq!(parse_size("10 mb"), Ok(10 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        for bad in ["", "MB", "1.5MB", "-1", "10TB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn keys_parse() {
        assert_eq!(parse_key("client_ip"), Ok(RateKey::ClientIp));
        assert_eq!(
            parse_key("header:X-User"),
            Ok(RateKey::Header("x-user".into()))
        );
        assert_eq!(parse_key("api_key"), Ok(RateKey::ApiKey));
        for bad in ["", "header:", "header:bad name", "cookie:x", "ip"] {
            assert!(parse_key(bad).is_err(), "{bad} should be refused");
        }
    }
}
