//! Tests of each rule, one element kind at a time: listeners, admin, routes, upstreams, TLS.

use super::tests::{errors, ok, one_error, MINIMAL};
use crate::config::model::HostMatch;

/// MINIMAL with its `routes` replaced.
fn with_routes(routes: &str) -> String {
    MINIMAL.replace("  - { name: app, upstream: app }\n", routes)
}

#[test]
fn listeners_need_valid_unique_addresses_and_names() {
    one_error(
        "listeners: { http: 'localhost:80' }\n",
        1,
        "listeners.http",
        "invalid address",
    );
    one_error(
        "listeners: { http: 0.0.0.0:80, https: 0.0.0.0:80 }\n",
        1,
        "listeners.https",
        "already used by listener `http`",
    );
    let extra = |name: &str| {
        format!("listeners:\n  http: 0.0.0.0:80\n  extra:\n    - {{ name: a, address: 127.0.0.1:1 }}\n    - {{ name: {name}, address: 127.0.0.1:2 }}\n")
    };
    one_error(
        &extra("a"),
        5,
        "listeners.extra[1].name",
        "duplicate listener name",
    );
    one_error(&extra("https"), 5, "listeners.extra[1].name", "built-in");
    one_error(&extra("''"), 5, "listeners.extra[1].name", "empty");
    one_error("listeners: {}\n", 1, "listeners", "at least one listener");
    one_error("workers: 1\n", 1, "listeners", "at least one listener");
}

#[test]
fn extra_listeners_keep_their_tls_flag_and_http_redirects_only_with_https() {
    let config = ok("listeners:\n  http: 0.0.0.0:80\n  extra: [ { name: s, address: 127.0.0.1:1, tls: true } ]\n");
    assert!(!config.listeners[0].redirect_to_https);
    assert!(config.listener("s").unwrap().tls);
}

#[test]
fn workers_and_admin() {
    one_error(
        &(MINIMAL.to_string() + "workers: 0\n"),
        8,
        "workers",
        "at least 1",
    );
    one_error(
        &(MINIMAL.to_string() + "workers: -1\n"),
        8,
        "workers",
        "expected usize",
    );
    let config = ok(&(MINIMAL.to_string() + "admin: { listen: 127.0.0.1:9901 }\n"));
    assert_eq!(config.admin.unwrap().listen.to_string(), "127.0.0.1:9901");
    one_error(
        &(MINIMAL.to_string() + "admin: { listen: 127.0.0.1:8443 }\n"),
        8,
        "admin.listen",
        "already used by listener `https`",
    );
    one_error(
        &(MINIMAL.to_string() + "admin: { listen: x }\n"),
        8,
        "admin.listen",
        "invalid address",
    );
}

#[test]
fn route_names_must_be_unique_and_non_empty() {
    let source = with_routes("  - { name: a, upstream: app, hosts: [x.com] }\n  - { name: a, upstream: app, hosts: [y.com] }\n");
    one_error(
        &source,
        5,
        "routes[1].name",
        "duplicate route name `a` (first used at line 4)",
    );
    one_error(
        &with_routes("  - { name: '', upstream: app }\n"),
        4,
        "routes[0].name",
        "empty",
    );
}

#[test]
fn route_references_must_exist() {
    let source = with_routes("  - { name: a, upstream: nope }\n");
    one_error(
        &source,
        4,
        "routes[0].upstream",
        "no upstream named `nope` (defined: app)",
    );
    let source = with_routes("  - { name: a, upstream: app, listener: internal }\n");
    one_error(
        &source,
        4,
        "routes[0].listener",
        "no listener named `internal` (defined: https)",
    );
    let config = ok(&with_routes(
        "  - { name: a, upstream: app, listener: https }\n",
    ));
    assert_eq!(config.routes[0].listener.as_deref(), Some("https"));
}

#[test]
fn route_hosts_are_checked_one_by_one() {
    let source = with_routes("  - { name: a, upstream: app, hosts: [ok.com, '*', a.*.com, 'b.com:443', 'c..com', 'd_e.com'] }\n");
    let found = errors(&source);
    let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "routes[0].hosts[1]",
            "routes[0].hosts[2]",
            "routes[0].hosts[3]",
            "routes[0].hosts[4]",
            "routes[0].hosts[5]"
        ],
        "{found}"
    );
    let config = ok(&with_routes(
        "  - { name: a, upstream: app, hosts: [OK.com, '*.Wild.org'] }\n",
    ));
    assert_eq!(
        config.routes[0].hosts,
        [
            HostMatch::Exact("ok.com".into()),
            HostMatch::Wildcard("wild.org".into())
        ]
    );
}

/// An element with an unknown key is still decoded and checked: each of its errors is reported,
/// with its own position and key path.
#[test]
fn an_unknown_key_does_not_hide_the_other_errors_of_its_element() {
    let found = errors(&with_routes(
        "  - { name: a, upstream: nope, colour: red }\n",
    ));
    let summary: Vec<(usize, usize, &str)> = found
        .iter()
        .map(|e| (e.line, e.column, e.key.as_str()))
        .collect();
    assert_eq!(
        summary,
        [(4, 26, "routes[0].upstream"), (4, 32, "routes[0].colour")],
        "{found}"
    );
    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines[0],
        "test.yaml:4:26: routes[0].upstream: no upstream named `nope` (defined: app)"
    );
    assert!(
        lines[1].starts_with(
            "test.yaml:4:32: routes[0].colour: unknown key `colour`, expected one of `name`,"
        ),
        "{found}"
    );

    // Several unknown keys, at several depths, beside errors of known keys.
    let source = "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n    servers: [ { address: 10.0.0.1:80, wieght: 2, weight: 0 } ]\n    timeouts: { conect: 1s, read: forever }\n    retry: 3\n";
    let found = errors(source);
    let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "upstreams.u.servers[0].wieght",
            "upstreams.u.servers[0].weight",
            "upstreams.u.timeouts.conect",
            "upstreams.u.timeouts.read",
            "upstreams.u.retry",
        ],
        "{found}"
    );

    // A misspelt required key is one mistake: its unknown key, not also the missing one.
    one_error(
        &with_routes("  - { name: a, upstrem: app }\n"),
        4,
        "routes[0].upstrem",
        "unknown key `upstrem`",
    );
    // A missing required key beside an unknown key that is not like it is its own mistake.
    let found = errors(&with_routes("  - { upstream: app, colour: red }\n"));
    let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["routes[0]", "routes[0].colour"], "{found}");
    assert!(
        found.0[0].message.contains("missing field `name`"),
        "{found}"
    );
    // Nor does one of another mapping hide it.
    let found = errors(&with_routes(
        "  - { name: a, rate_limit: { rate: 1/s, colour: red } }\n",
    ));
    let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["routes[0]", "routes[0].rate_limit.colour"],
        "{found}"
    );
    assert!(
        found.0[0].message.contains("missing field `upstream`"),
        "{found}"
    );
}

#[test]
fn path_prefix_and_strip_prefix() {
    let source = with_routes("  - { name: a, upstream: app, path_prefix: v1/ }\n");
    one_error(&source, 4, "routes[0].path_prefix", "must start with `/`");
    let source = with_routes("  - { name: a, upstream: app, strip_prefix: true }\n");
    one_error(&source, 4, "routes[0].strip_prefix", "nothing to strip");
    let source =
        with_routes("  - { name: a, upstream: app, path_prefix: /, strip_prefix: true }\n");
    one_error(&source, 4, "routes[0].strip_prefix", "nothing to strip");
}

#[test]
fn routes_matching_the_same_requests_are_duplicates() {
    let source = with_routes("  - { name: a, upstream: app, hosts: [x.com, y.com] }\n  - { name: b, upstream: app, hosts: [Y.com] }\n");
    one_error(
        &source,
        5,
        "routes[1]",
        "host `y.com` and path_prefix `/` as route `a`",
    );
    let source = with_routes(
        "  - { name: a, upstream: app }\n  - { name: b, upstream: app, listener: https }\n",
    );
    one_error(&source, 5, "routes[1]", "any host");
    // A different prefix, host or listener is not a duplicate.
    ok(&with_routes("  - { name: a, upstream: app, hosts: [x.com] }\n  - { name: b, upstream: app, hosts: [x.com], path_prefix: /v1/ }\n  - { name: c, upstream: app, hosts: ['*.x.com'] }\n  - { name: d, upstream: app }\n"));
}

#[test]
fn upstream_servers() {
    let base = "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n";
    one_error(
        &format!("{base}    servers: []\n"),
        4,
        "upstreams.u.servers",
        "at least one server",
    );
    one_error(
        &format!("{base}    timeouts: {{ read: 1s }}\n"),
        3,
        "upstreams.u.servers",
        "at least one server",
    );
    let dup =
        format!("{base}    servers: [ {{ address: 10.0.0.1:80 }}, {{ address: 10.0.0.1:80 }} ]\n");
    one_error(
        &dup,
        4,
        "upstreams.u.servers[1].address",
        "duplicate server address",
    );
    let weight = format!("{base}    servers: [ {{ address: 10.0.0.1:80, weight: 1001 }} ]\n");
    one_error(
        &weight,
        4,
        "upstreams.u.servers[0].weight",
        "between 1 and 1000",
    );
    let bad = format!("{base}    servers: [ {{ address: no-such-host.invalid:80 }} ]\n");
    one_error(
        &bad,
        4,
        "upstreams.u.servers[0].address",
        "`no-such-host.invalid:80`",
    );
    let bad = format!("{base}    servers: [ {{ address: 10.0.0.1 }} ]\n");
    one_error(&bad, 4, "upstreams.u.servers[0].address", "HOST:PORT");
    let v6 = ok(&format!(
        "{base}    servers: [ {{ address: '[::1]:80', weight: 1000 }} ]\n"
    ));
    assert_eq!(v6.upstreams["u"].servers[0].socket.to_string(), "[::1]:80");
}

#[test]
fn upstream_timeouts() {
    let base = "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n    servers: [ { address: 10.0.0.1:80 } ]\n";
    one_error(
        &format!("{base}    timeouts: {{ connect: 5 }}\n"),
        5,
        "upstreams.u.timeouts.connect",
        "missing unit",
    );
    one_error(
        &format!("{base}    timeouts: {{ connect: [5s] }}\n"),
        5,
        "upstreams.u.timeouts.connect",
        "invalid type",
    );
    one_error(
        &format!("{base}    timeouts: {{ connect: 0s }}\n"),
        5,
        "upstreams.u.timeouts.connect",
        "greater than zero",
    );
    one_error(
        &format!("{base}    timeouts: {{ read: 5 minutes }}\n"),
        5,
        "upstreams.u.timeouts.read",
        "invalid duration",
    );
    let config = ok(&format!("{base}    timeouts: {{ read: 500ms }}\n"));
    assert_eq!(config.upstreams["u"].timeouts.read.as_millis(), 500);
}

#[test]
fn inference_upstreams_are_checked_at_their_keys() {
    let base = "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n    servers: [ { address: 10.0.0.1:80 } ]\n";
    one_error(
        &format!("{base}    balance: cache_aware\n"),
        5,
        "upstreams.u.balance",
        "needs `inference:`",
    );
    one_error(
        &format!("{base}    inference: {{ engine: tgi }}\n"),
        5,
        "upstreams.u.inference.engine",
        "unknown engine `tgi`",
    );
    one_error(
        &format!("{base}    inference: {{ engine: vllm, models: everything }}\n"),
        5,
        "upstreams.u.inference.models",
        "expected `discover`",
    );
    one_error(
        &format!("{base}    inference: {{ engine: vllm, models: [a, a] }}\n"),
        5,
        "upstreams.u.inference.models[1]",
        "duplicate model `a`",
    );
    one_error(
        &format!("{base}    inference: {{ engine: vllm, max_body: 0 }}\n"),
        5,
        "upstreams.u.inference.max_body",
        "greater than zero",
    );
    one_error(
        &format!("{base}    inference: {{ engine: vllm, refresh: 10ms }}\n"),
        5,
        "upstreams.u.inference.refresh",
        "at least 100ms",
    );
    one_error(
        "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n    servers: [ { address: 10.0.0.1:80, models: [m] } ]\n",
        4,
        "upstreams.u.servers[0].models",
        "needs `inference:`",
    );
    one_error(
        &format!("{base}    balance: fastest\n"),
        5,
        "upstreams.u.balance",
        "unknown variant",
    );
    let config = ok(&format!(
        "{base}    balance: cache_aware\n    inference: {{ engine: sglang, models: [a, b], refresh: 2s, max_body: 4MB, affinity: false }}\n"
    ));
    let u = &config.upstreams["u"];
    assert_eq!(u.balance, crate::config::model::Balance::CacheAware);
    let inference = u.inference.as_ref().unwrap();
    assert_eq!(inference.engine, crate::config::model::Engine::Sglang);
    assert_eq!(
        inference.models,
        crate::config::model::Models::List(vec!["a".into(), "b".into()])
    );
    assert_eq!(inference.max_body, 4 << 20);
    assert!(!inference.affinity);
    let config = ok(&format!(
        "{base}    balance: metrics\n    inference: {{ engine: vllm }}\n"
    ));
    let inference = config.upstreams["u"].inference.clone().unwrap();
    assert_eq!(inference.models, crate::config::model::Models::Discover);
    assert!(inference.affinity);
}

#[test]
fn cache_model_and_kv_event_keys_are_checked_at_their_keys() {
    let head = "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n";
    let inference = "    balance: cache_aware\n    inference: { engine: vllm }\n";
    one_error(
        &format!("{head}    servers: [ {{ address: 10.0.0.1:80 }} ]\n    balance: cache_aware\n    inference: {{ engine: vllm, prefill_tokens_per_sec: 0 }}\n"),
        6,
        "upstreams.u.inference.prefill_tokens_per_sec",
        "greater than zero",
    );
    one_error(
        &format!("{head}    servers: [ {{ address: 10.0.0.1:80 }} ]\n    balance: cache_aware\n    inference: {{ engine: vllm, cache_tokens: 0 }}\n"),
        6,
        "upstreams.u.inference.cache_tokens",
        "greater than zero",
    );
    one_error(
        &format!("{head}    servers: [ {{ address: 10.0.0.1:80, inference: {{ kv_events: \"10.0.0.1:5557\" }} }} ]\n{inference}"),
        4,
        "upstreams.u.servers[0].inference.kv_events",
        "expected `tcp://HOST:PORT`",
    );
    one_error(
        &format!("{head}    servers: [ {{ address: 10.0.0.1:80, inference: {{ kv_events_replay: \"tcp://10.0.0.1:5558\" }} }} ]\n{inference}"),
        4,
        "upstreams.u.servers[0].inference.kv_events_replay",
        "needs `kv_events`",
    );
    one_error(
        &format!("{head}    servers: [ {{ address: 10.0.0.1:80, inference: {{ kv_events: \"tcp://10.0.0.1:5557\" }} }} ]\n"),
        4,
        "upstreams.u.servers[0].inference",
        "needs `inference:`",
    );
    one_error(
        &format!("{head}    servers: [ {{ address: 10.0.0.1:80, inference: {{ kv_event: \"tcp://10.0.0.1:5557\" }} }} ]\n{inference}"),
        4,
        "upstreams.u.servers[0].inference.kv_event",
        "unknown key",
    );
    let config = ok(&format!(
        "{head}    servers: [ {{ address: 10.0.0.1:80, inference: {{ kv_events: \"tcp://gpu-0:5557\", kv_events_replay: \"tcp://gpu-0:5558\" }} }} ]\n    balance: cache_aware\n    inference: {{ engine: vllm, prefill_tokens_per_sec: 12000, cache_tokens: 400000, kv_hash_seed: \"42\" }}\n"
    ));
    let u = &config.upstreams["u"];
    let settings = u.inference.as_ref().unwrap();
    assert_eq!(settings.prefill_tokens_per_sec, Some(12_000));
    assert_eq!(settings.cache_tokens, Some(400_000));
    assert_eq!(settings.kv_hash_seed, "42");
    assert_eq!(
        u.servers[0].kv_events,
        Some(crate::config::model::KvEvents {
            endpoint: "tcp://gpu-0:5557".into(),
            replay: Some("tcp://gpu-0:5558".into()),
        })
    );
}

#[test]
fn hsts_is_a_duration() {
    let config = ok(&(MINIMAL.to_string() + "tls: { hsts: 1d }\n"));
    assert_eq!(config.tls.hsts.unwrap().as_secs(), 86_400);
    one_error(
        &(MINIMAL.to_string() + "tls: { hsts: forever }\n"),
        8,
        "tls.hsts",
        "invalid duration",
    );
}
