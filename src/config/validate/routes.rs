//! `routes`: names, references to upstreams and listeners, host and path matching, and the
//! rules of [`super::rules`]. Several routes may share listener, host and path prefix when they
//! differ by `match`; one without `match` takes every request of its key, so none may follow it.

use rustc_hash::FxHashMap as HashMap;

use serde_yaml::Value;

use super::hosts::parse_host;
use super::listeners::Listeners;
use super::rules::RuleContext;
use super::Checker;
use crate::config::draft::DraftRoute;
use crate::config::model::{HostMatch, Route, RouteAction};
use crate::config::raw::RawRoute;

/// The path prefix of a route that gives none.
const DEFAULT_PATH_PREFIX: &str = "/";

/// What two routes must not share: (listener, host or `None` for any host, path prefix).
type MatchKey = (String, Option<HostMatch>, String);

pub(super) fn check(
    checker: &mut Checker,
    value: Option<&Value>,
    upstream_names: &[String],
    listeners: &Listeners,
    geoip: bool,
) -> Vec<DraftRoute> {
    let mut routes = Vec::new();
    // Element path by name of every route seen, valid or not, for duplicate checks (hashed: a
    // configuration may hold tens of thousands of routes).
    let mut seen_names: HashMap<String, String> = HashMap::default();
    // The first route without `match` of each key: it takes every request of the key.
    let mut unconditional: HashMap<MatchKey, String> = HashMap::default();
    for (path, element) in checker.sequence(value, "routes") {
        let Some(raw) = checker.decode::<RawRoute>(Some(element), &path) else {
            continue;
        };
        let name_path = format!("{path}.name");
        if raw.name.is_empty() {
            checker.at_value(&name_path, "a route name must not be empty");
        } else if let Some(first) = seen_names.get(&raw.name) {
            let message = format!(
                "duplicate route name `{}` (first used at line {})",
                raw.name,
                checker.line_of(first)
            );
            checker.at_value(&name_path, message);
        } else {
            seen_names.insert(raw.name.clone(), name_path);
        }

        let action = checker.route_action(&path, &raw, element);
        if let Some(RouteAction::Upstream(upstream)) = &action {
            if !upstream_names.contains(upstream) {
                let message = format!(
                    "no upstream named `{upstream}` (defined: {})",
                    list_or_none(upstream_names)
                );
                checker.at_value(&format!("{path}.upstream"), message);
            }
        }
        if let (Some(listener), Some(names)) = (&raw.listener, &listeners.names) {
            if !names.contains(listener) {
                let message = format!(
                    "no listener named `{listener}` (defined: {})",
                    list_or_none(names)
                );
                checker.at_value(&format!("{path}.listener"), message);
            }
        }

        let mut hosts = Vec::with_capacity(raw.hosts.len());
        for (index, host) in raw.hosts.iter().enumerate() {
            match parse_host(host) {
                Ok(host) => hosts.push(host),
                Err(message) => checker.at_value(&format!("{path}.hosts[{index}]"), message),
            }
        }

        let path_prefix = raw
            .path_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_PATH_PREFIX.to_string());
        if !path_prefix.starts_with('/') {
            let message = format!("path_prefix `{path_prefix}` must start with `/`");
            checker.at_value(&format!("{path}.path_prefix"), message);
        } else if raw.strip_prefix && path_prefix == DEFAULT_PATH_PREFIX {
            checker.at_value(
                &format!("{path}.strip_prefix"),
                "strip_prefix needs a path_prefix other than `/` (there is nothing to strip)",
            );
        }

        let listener = raw
            .listener
            .clone()
            .unwrap_or_else(|| listeners.default_name.to_string());
        let host_keys: Vec<Option<HostMatch>> = if hosts.is_empty() && raw.hosts.is_empty() {
            vec![None]
        } else {
            hosts.iter().cloned().map(Some).collect()
        };
        let conditional = raw.matcher.is_some();
        for host in host_keys {
            let key = (listener.clone(), host, path_prefix.clone());
            if let Some(first) = unconditional.get(&key) {
                let host = match &key.1 {
                    None => "any host".to_string(),
                    Some(HostMatch::Exact(name)) => format!("host `{name}`"),
                    Some(HostMatch::Wildcard(name)) => format!("host `*.{name}`"),
                };
                let message = if conditional {
                    format!(
                        "route is never used: route `{first}` comes first with the same listener `{listener}`, {host} and path_prefix `{path_prefix}` and no `match`, so it takes every request"
                    )
                } else {
                    format!(
                        "route matches the same listener `{listener}`, {host} and path_prefix `{path_prefix}` as route `{first}` (routes that share them must differ by `match`)"
                    )
                };
                checker.at_value(&path, message);
            } else if !conditional {
                unconditional.insert(key, raw.name.clone());
            }
        }
        let context = RuleContext {
            listener: &listener,
            client_auth: listeners.client_auth.contains(&listener),
            geoip,
        };
        let rules = checker.route_rules(&path, &raw, action.as_ref(), context);

        let security = checker.route_security(&path, &raw);
        let api_keys = raw
            .api_keys
            .as_ref()
            .map(|keys| checker.api_keys(&format!("{path}.api_keys"), keys));
        let basic_auth = raw
            .basic_auth
            .as_ref()
            .map(|auth| checker.basic_auth(&format!("{path}.basic_auth"), auth));

        // A route whose action has errors is kept for its look-ups (the file is refused anyway).
        let action = action.unwrap_or_else(|| RouteAction::Upstream(String::new()));
        let route = Route {
            name: raw.name,
            hosts,
            path_prefix,
            strip_prefix: raw.strip_prefix,
            listener: raw.listener,
            action,
            security,
            rules,
        };
        routes.push(DraftRoute {
            route,
            api_keys,
            basic_auth,
        });
    }
    routes
}

/// `a, b` or `none`.
pub(super) fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
