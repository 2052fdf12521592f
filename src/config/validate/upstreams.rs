//! `upstreams`: servers (resolved addresses, weights, limits), timeouts, and the balancing keys
//! checked in [`super::balancing`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde_yaml::Value;

use super::balancing;
use super::Checker;
use crate::config::duration::parse_duration;
use crate::config::model::{Server, Timeouts, Upstream, DEFAULT_RETRIES, DEFAULT_WEIGHT};
use crate::config::raw::{RawTimeouts, RawUpstream};

/// Largest allowed server weight.
const MAX_WEIGHT: u32 = 1000;

/// The checked upstreams, and every declared name for route references.
pub(super) struct Upstreams {
    pub upstreams: BTreeMap<String, Upstream>,
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
        let errors_before = checker.errors.len();
        let upstream = check_upstream(checker, &path, name.clone(), raw);
        if checker.errors.len() == errors_before {
            upstreams.insert(name, upstream);
        }
    }
    Upstreams { upstreams, names }
}

fn check_upstream(checker: &mut Checker, path: &str, name: String, raw: RawUpstream) -> Upstream {
    let mut servers: Vec<Server> = Vec::new();
    let servers_path = format!("{path}.servers");
    let raw_servers = raw.servers.unwrap_or_default();
    if raw_servers.is_empty() && raw.discovery.is_none() {
        checker.at_key(
            &servers_path,
            "an upstream needs at least one server (or `discovery`)",
        );
    }
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
        match resolve(&raw_server.address) {
            Ok(socket) => servers.push(Server {
                address: raw_server.address,
                socket,
                weight,
                max_inflight: raw_server.max_inflight.filter(|m| *m > 0),
                drain: raw_server.drain.unwrap_or(false),
                models: raw_server.models,
            }),
            Err(message) => checker.at_value(&address_path, message),
        }
    }

    let balance = balancing::balance(checker, path, raw.balance, raw.hash_key);
    let has_inference = raw.inference.is_some();
    checker.inference_policy(path, &balance, has_inference);
    let inference = raw
        .inference
        .and_then(|i| checker.inference(&format!("{path}.inference"), i));
    for (index, server) in servers.iter().enumerate() {
        if server.models.is_some() && !has_inference {
            checker.at_key(
                &format!("{servers_path}[{index}].models"),
                "`models` on a server needs `inference:` on its upstream",
            );
        }
    }
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
    Upstream {
        name,
        servers,
        balance,
        timeouts,
        sticky,
        health,
        retries,
        queue,
        discovery,
        inference,
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

/// `host:port` or `[v6]:port` → the first address it resolves to.
fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Ok(socket);
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
    match (host, port).to_socket_addrs() {
        Ok(mut found) => found
            .next()
            .ok_or_else(|| format!("cannot resolve server address `{address}`: no address found")),
        Err(error) => Err(format!(
            "cannot resolve server address `{address}`: {error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_literals_and_names() {
        assert_eq!(
            resolve("10.0.0.1:80"),
            Ok(SocketAddr::from(([10, 0, 0, 1], 80)))
        );
        assert_eq!(resolve("[::1]:8080").map(|a| a.port()), Ok(8080));
        assert_eq!(resolve("localhost:8000").map(|a| a.port()), Ok(8000));
    }

    #[test]
    fn rejects_malformed_and_unresolvable() {
        for bad in [
            "10.0.0.1",
            ":80",
            "::1:80",
            "[::1]",
            "host:port",
            "host:99999",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
        let message = resolve("no-such-host.invalid:80").unwrap_err();
        assert!(message.contains("`no-such-host.invalid:80`"), "{message}");
    }
}
