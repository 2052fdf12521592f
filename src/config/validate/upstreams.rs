//! `upstreams`: servers (address syntax, weights, limits), timeouts, and the balancing keys
//! checked in [`super::balancing`]. Host names are looked up later, by `resolve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_yaml::Value;

use super::balancing;
use super::Checker;
use crate::config::draft::{DraftServer, DraftUpstream, ServerHost};
use crate::config::duration::parse_duration;
use crate::config::model::{Timeouts, Upstream, DEFAULT_RETRIES, DEFAULT_WEIGHT};
use crate::config::raw::{RawTimeouts, RawUpstream};

/// Largest allowed server weight.
const MAX_WEIGHT: u32 = 1000;

/// The checked upstreams (every one that decoded), and every declared name for route references.
pub(super) struct Upstreams {
    pub upstreams: BTreeMap<String, DraftUpstream>,
    /// Every upstream name in the file, valid or not.
    pub names: Vec<String>,
}

pub(super) fn check(checker: &mut Checker, value: Option<&Value>) -> Upstreams {
    let mut upstreams = BTreeMap::new();
    let mut names = Vec::new();
    for (name, element) in checker.mapping(value, "upstreams") {
        let path = format!("upstreams.{name}");
        names.push(name.clone());
        if name.is_empty() {
            checker.at_key(&path, "an upstream name must not be empty");
        }
        let Some(raw) = checker.decode::<RawUpstream>(Some(element), &path) else {
            continue;
        };
        let upstream = check_upstream(checker, &path, name.clone(), raw);
        upstreams.insert(name, upstream);
    }
    Upstreams { upstreams, names }
}

fn check_upstream(
    checker: &mut Checker,
    path: &str,
    name: String,
    raw: RawUpstream,
) -> DraftUpstream {
    let mut servers: Vec<DraftServer> = Vec::new();
    let servers_path = format!("{path}.servers");
    let raw_servers = raw.servers.unwrap_or_default();
    if raw_servers.is_empty() && raw.discovery.is_none() {
        checker.at_key(
            &servers_path,
            "an upstream needs at least one server (or `discovery`)",
        );
    }
    let has_inference = raw.inference.is_some();
    let mut seen: Vec<String> = Vec::new();
    for (index, raw_server) in raw_servers.into_iter().enumerate() {
        let server_path = format!("{servers_path}[{index}]");
        let address_path = format!("{server_path}.address");
        if let Some(models) = &raw_server.models {
            checker.model_list(&format!("{server_path}.models"), models);
        }
        if raw_server.max_inflight == Some(0) {
            checker.at_value(&format!("{server_path}.max_inflight"), "must be at least 1");
        }
        let weight = raw_server.weight.unwrap_or(DEFAULT_WEIGHT);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            let message = format!("weight must be between 1 and {MAX_WEIGHT}, got {weight}");
            checker.at_value(&format!("{server_path}.weight"), message);
        }
        if seen.contains(&raw_server.address) {
            let message = format!(
                "duplicate server address `{}` in this upstream",
                raw_server.address
            );
            checker.at_value(&address_path, message);
            continue;
        }
        seen.push(raw_server.address.clone());
        if raw_server.models.is_some() && !has_inference {
            checker.at_key(
                &format!("{server_path}.models"),
                "`models` on a server needs `inference:` on its upstream",
            );
        }
        let kv_events = raw_server.inference.and_then(|raw| {
            checker.server_inference(&format!("{server_path}.inference"), raw, has_inference)
        });
        match parse_address(&raw_server.address) {
            Ok(host) => servers.push(DraftServer {
                at: address_path,
                address: raw_server.address,
                host,
                weight,
                max_inflight: raw_server.max_inflight.filter(|m| *m > 0),
                drain: raw_server.drain.unwrap_or(false),
                models: raw_server.models,
                kv_events,
            }),
            Err(message) => checker.at_value(&address_path, message),
        }
    }

    let balance = balancing::balance(checker, path, raw.balance, raw.hash_key);
    checker.inference_policy(path, &balance, has_inference);
    let inference = raw
        .inference
        .and_then(|i| checker.inference(&format!("{path}.inference"), i));
    let sticky = raw
        .sticky
        .map(|s| balancing::sticky(checker, &format!("{path}.sticky"), s));
    let health = balancing::health(checker, &format!("{path}.health"), raw.health);
    let retries = balancing::retries(checker, path, raw.retries).unwrap_or(DEFAULT_RETRIES);
    let queue = balancing::queue(checker, &format!("{path}.queue"), raw.queue);
    let discovery = raw
        .discovery
        .and_then(|d| balancing::discovery(checker, &format!("{path}.discovery"), d));
    let timeouts = raw
        .timeouts
        .map(|raw| check_timeouts(checker, &format!("{path}.timeouts"), raw))
        .unwrap_or_default();
    let tls = raw
        .tls
        .and_then(|tls| checker.upstream_tls(&format!("{path}.tls"), tls));
    let upstream = Upstream {
        name,
        servers: Vec::new(),
        balance,
        timeouts,
        sticky,
        health,
        retries,
        queue,
        discovery,
        inference,
        tls: None,
    };
    DraftUpstream {
        upstream,
        servers,
        tls,
    }
}

fn check_timeouts(checker: &mut Checker, path: &str, raw: RawTimeouts) -> Timeouts {
    let defaults = Timeouts::default();
    let mut one = |key: &str, text: Option<String>, default: Duration| {
        let Some(text) = text else {
            return default;
        };
        let key_path = format!("{path}.{key}");
        match parse_duration(&text) {
            Ok(duration) if duration.is_zero() => {
                checker.at_value(&key_path, "must be greater than zero");
                default
            }
            Ok(duration) => duration,
            Err(message) => {
                checker.at_value(&key_path, message);
                default
            }
        }
    };
    Timeouts {
        connect: one("connect", raw.connect, defaults.connect),
        read: one("read", raw.read, defaults.read),
        websocket_idle: one(
            "websocket_idle",
            raw.websocket_idle,
            defaults.websocket_idle,
        ),
    }
}

/// `host:port` or `[v6]:port` → a socket address, or the name and port to look up.
fn parse_address(address: &str) -> Result<ServerHost, String> {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Ok(ServerHost::Socket(socket));
    }
    let expected = "expected HOST:PORT or [IPv6]:PORT";
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("invalid server address `{address}`: {expected}"));
    };
    if host.is_empty() || host.contains([':', '[', ']']) {
        return Err(format!("invalid server address `{address}`: {expected}"));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("invalid port in server address `{address}`"));
    };
    Ok(ServerHost::Name {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_addresses_and_names_wait_for_resolving() {
        assert_eq!(
            parse_address("10.0.0.1:80"),
            Ok(ServerHost::Socket(SocketAddr::from(([10, 0, 0, 1], 80))))
        );
        assert_eq!(
            parse_address("[::1]:8080"),
            Ok(ServerHost::Socket("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(
            parse_address("localhost:8000"),
            Ok(ServerHost::Name {
                host: "localhost".into(),
                port: 8000
            })
        );
        assert!(parse_address("no-such-host.invalid:80").is_ok());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "10.0.0.1",
            ":80",
            "::1:80",
            "[::1]",
            "host:port",
            "host:99999",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }
}
