//! `upstreams.NAME` balancing keys: `balance` + `hash_key`, `sticky`, `health`, `retries`,
//! `queue` and `discovery`, each checked with its position; defaults filled in.

use std::net::SocketAddr;
use std::time::Duration;

use super::Checker;
use crate::config::duration::parse_duration;
use crate::config::model::{
    ActiveHealth, Balance, Discovery, HashKey, Health, Queue, Sticky, StickyMode,
    DEFAULT_DISCOVERY_REFRESH, DEFAULT_EJECT, DEFAULT_HEALTH_FALL, DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_PATH, DEFAULT_HEALTH_RISE, DEFAULT_HEALTH_TIMEOUT, DEFAULT_PASSIVE_FAILS,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_STICKY_COOKIE, DEFAULT_STICKY_TTL, MAX_RETRIES,
};
use crate::config::raw::{RawBalance, RawDiscovery, RawHealth, RawQueue, RawSticky, RawStickyMode};

/// Most requests a queue may hold.
const MAX_QUEUE_SIZE: u32 = 1_000_000;
/// Shortest DNS refresh.
const MIN_DISCOVERY_REFRESH: Duration = Duration::from_millis(100);

/// A positive duration at `path`, or `default` (the error is recorded).
pub(super) fn positive_duration(
    checker: &mut Checker,
    path: &str,
    text: Option<String>,
    default: Duration,
) -> Duration {
    let Some(text) = text else {
        return default;
    };
    match parse_duration(&text) {
        Ok(duration) if duration.is_zero() => {
            checker.at_value(path, "must be greater than zero");
            default
        }
        Ok(duration) => duration,
        Err(message) => {
            checker.at_value(path, message);
            default
        }
    }
}

/// An HTTP header name, lowercased, or an error at `path`.
fn header_name(checker: &mut Checker, path: &str, name: &str) -> String {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        checker.at_value(path, format!("`{name}` is not a valid header name"));
    }
    name.to_ascii_lowercase()
}

/// A cookie name (an RFC 6265 token), or an error at `path`.
fn cookie_name(checker: &mut Checker, path: &str, name: &str) -> String {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        checker.at_value(path, format!("`{name}` is not a valid cookie name"));
    }
    name.to_string()
}

pub(super) fn balance(
    checker: &mut Checker,
    path: &str,
    raw: Option<RawBalance>,
    hash_key: Option<String>,
) -> Balance {
    let key_path = format!("{path}.hash_key");
    let balance = match raw {
        None | Some(RawBalance::RoundRobin) => Balance::RoundRobin,
        Some(RawBalance::LeastInflight) => Balance::LeastInflight,
        Some(RawBalance::P2c) => Balance::P2c,
        Some(RawBalance::Hash) => {
            let key = match hash_key.as_deref() {
                None | Some("client_ip") => HashKey::ClientIp,
                Some(text) => match text.split_once(':') {
                    Some(("header", name)) => {
                        HashKey::Header(header_name(checker, &key_path, name))
                    }
                    Some(("cookie", name)) => {
                        HashKey::Cookie(cookie_name(checker, &key_path, name))
                    }
                    _ => {
                        let message = format!(
                            "unknown hash key `{text}`: expected `client_ip`, `header:NAME` or `cookie:NAME`"
                        );
                        checker.at_value(&key_path, message);
                        HashKey::ClientIp
                    }
                },
            };
            return Balance::Hash(key);
        }
        Some(RawBalance::Metrics) => Balance::Metrics,
        Some(RawBalance::CacheAware) => Balance::CacheAware,
    };
    if hash_key.is_some() {
        checker.at_key(&key_path, "`hash_key` only applies to `balance: hash`");
    }
    balance
}

pub(super) fn sticky(checker: &mut Checker, path: &str, raw: RawSticky) -> Sticky {
    let ttl = positive_duration(checker, &format!("{path}.ttl"), raw.ttl, DEFAULT_STICKY_TTL);
    let mode = match raw.mode {
        RawStickyMode::Cookie => {
            let name = raw.cookie.as_deref().unwrap_or(DEFAULT_STICKY_COOKIE);
            StickyMode::Cookie {
                name: cookie_name(checker, &format!("{path}.cookie"), name),
            }
        }
        RawStickyMode::ClientIp => StickyMode::ClientIp,
        RawStickyMode::Header => match &raw.header {
            Some(name) => StickyMode::Header {
                name: header_name(checker, &format!("{path}.header"), name),
            },
            None => {
                checker.at_key(path, "`mode: header` needs `header: NAME`");
                StickyMode::ClientIp
            }
        },
    };
    if raw.cookie.is_some() && raw.mode != RawStickyMode::Cookie {
        checker.at_key(
            &format!("{path}.cookie"),
            "`cookie` only applies to `mode: cookie`",
        );
    }
    if raw.header.is_some() && raw.mode != RawStickyMode::Header {
        checker.at_key(
            &format!("{path}.header"),
            "`header` only applies to `mode: header`",
        );
    }
    Sticky { mode, ttl }
}

/// `health`: active checks (when any of their keys is present) and passive ejection.
pub(super) fn health(checker: &mut Checker, path: &str, raw: Option<RawHealth>) -> Health {
    let Some(raw) = raw else {
        return Health::default();
    };
    let key = |k: &str| format!("{path}.{k}");
    // Active checks run when any of their keys is given; `passive_fails`, `eject` and
    // `slow_start` alone tune passive ejection only.
    let active = raw.path.is_some()
        || raw.interval.is_some()
        || raw.timeout.is_some()
        || raw.rise.is_some()
        || raw.fall.is_some()
        || raw.expect_status.is_some();
    let health_path = raw.path.unwrap_or_else(|| DEFAULT_HEALTH_PATH.into());
    if !health_path.starts_with('/') || health_path.contains(char::is_whitespace) {
        checker.at_value(&key("path"), "must start with `/` and contain no spaces");
    }
    let interval = positive_duration(
        checker,
        &key("interval"),
        raw.interval,
        DEFAULT_HEALTH_INTERVAL,
    );
    let timeout = positive_duration(
        checker,
        &key("timeout"),
        raw.timeout,
        DEFAULT_HEALTH_TIMEOUT,
    );
    let mut at_least_one = |k: &str, value: Option<u32>, default: u32| match value {
        Some(0) => {
            checker.at_value(&key(k), "must be at least 1");
            default
        }
        Some(v) => v,
        None => default,
    };
    let rise = at_least_one("rise", raw.rise, DEFAULT_HEALTH_RISE);
    let fall = at_least_one("fall", raw.fall, DEFAULT_HEALTH_FALL);
    if let Some(status) = raw.expect_status {
        if !(100..=599).contains(&status) {
            checker.at_value(&key("expect_status"), "must be an HTTP status (100-599)");
        }
    }
    let eject = positive_duration(checker, &key("eject"), raw.eject, DEFAULT_EJECT);
    let slow_start = raw
        .slow_start
        .map(|text| positive_duration(checker, &key("slow_start"), Some(text), Duration::ZERO));
    Health {
        active: active.then_some(ActiveHealth {
            path: health_path,
            interval,
            timeout,
            rise,
            fall,
            expect_status: raw.expect_status,
        }),
        passive_fails: raw.passive_fails.unwrap_or(DEFAULT_PASSIVE_FAILS),
        eject,
        slow_start,
    }
}

pub(super) fn retries(checker: &mut Checker, path: &str, raw: Option<u32>) -> Option<u32> {
    let retries = raw?;
    if retries > MAX_RETRIES {
        let message = format!("must be at most {MAX_RETRIES}, got {retries}");
        checker.at_value(&format!("{path}.retries"), message);
        return None;
    }
    Some(retries)
}

pub(super) fn queue(checker: &mut Checker, path: &str, raw: Option<RawQueue>) -> Queue {
    let Some(raw) = raw else {
        return Queue::default();
    };
    if raw.size > MAX_QUEUE_SIZE {
        let message = format!("must be at most {MAX_QUEUE_SIZE}, got {}", raw.size);
        checker.at_value(&format!("{path}.size"), message);
    }
    Queue {
        size: raw.size.min(MAX_QUEUE_SIZE),
        timeout: positive_duration(
            checker,
            &format!("{path}.timeout"),
            raw.timeout,
            DEFAULT_QUEUE_TIMEOUT,
        ),
    }
}

pub(super) fn discovery(checker: &mut Checker, path: &str, raw: RawDiscovery) -> Option<Discovery> {
    let refresh = positive_duration(
        checker,
        &format!("{path}.refresh"),
        raw.refresh,
        DEFAULT_DISCOVERY_REFRESH,
    );
    if refresh < MIN_DISCOVERY_REFRESH {
        checker.at_value(&format!("{path}.refresh"), "must be at least 100ms");
    }
    let nameserver = match raw.nameserver {
        None => None,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let message = format!("invalid nameserver `{text}`: expected IP:PORT");
                checker.at_value(&format!("{path}.nameserver"), message);
                None
            }
        },
    };
    let dns_path = format!("{path}.dns");
    let parsed = raw
        .dns
        .rsplit_once(':')
        .and_then(|(name, port)| Some((name, port.parse::<u16>().ok()?)));
    let Some((name, port)) = parsed.filter(|(name, port)| valid_dns_name(name) && *port > 0) else {
        let message = format!("invalid `{}`: expected NAME:PORT (a DNS name)", raw.dns);
        checker.at_value(&dns_path, message);
        return None;
    };
    Some(Discovery {
        name: name.to_ascii_lowercase(),
        port,
        refresh,
        nameserver,
    })
}

fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::valid_dns_name;

    #[test]
    fn dns_names() {
        assert!(valid_dns_name("gpu.inference.svc.cluster.local"));
        assert!(valid_dns_name("localhost."));
        assert!(!valid_dns_name(""));
        assert!(!valid_dns_name("a..b"));
        assert!(!valid_dns_name("10.0.0.1:80"));
    }
}
