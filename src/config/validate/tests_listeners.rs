//! Tests of the listener options: the built-in listeners as mappings (PROXY protocol, limits) and
//! the same keys on extra listeners.

use std::time::Duration;

use super::tests::{errors, ok, one_error, MINIMAL};
use crate::config::model::{Cidr, ListenerLimits};

/// MINIMAL with its https listener written as a mapping with `keys`.
fn https_with(keys: &str) -> String {
    MINIMAL.replace(
        "  https: 127.0.0.1:8443\n",
        &format!("  https: {{ address: 127.0.0.1:8443, {keys} }}\n"),
    )
}

#[test]
fn builtin_listeners_take_a_mapping_with_options() {
    let config = ok(&https_with(
        "proxy_protocol: true, proxy_protocol_from: [10.0.0.0/8], max_connections: 500, max_headers: 50, header_timeout: 5s, idle_timeout: 30s, h2_window: 4MB",
    ));
    let https = &config.listeners[0];
    assert_eq!(https.address.port(), 8443);
    assert_eq!(
        https.proxy_protocol,
        Some(vec![Cidr::parse("10.0.0.0/8").unwrap()])
    );
    assert_eq!(
        https.limits,
        ListenerLimits {
            max_connections: Some(500),
            max_headers: 50,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            h2_window: 4 << 20,
        }
    );
    // The bare address form keeps the defaults.
    assert_eq!(ok(MINIMAL).listeners[0].limits, ListenerLimits::default());
}

#[test]
fn listener_option_errors_point_at_their_key() {
    one_error(
        &https_with("proxy_protocol: true"),
        2,
        "listeners.https.proxy_protocol",
        "proxy_protocol_from",
    );
    one_error(
        &https_with("max_headers: 1000"),
        2,
        "listeners.https.max_headers",
        "between 1 and 256",
    );
    one_error(
        &https_with("max_connections: 0"),
        2,
        "listeners.https.max_connections",
        "at least 1",
    );
    one_error(
        &https_with("idle_timeout: soon"),
        2,
        "listeners.https.idle_timeout",
        "",
    );
    for (window, message) in [
        ("h2_window: 1KB", "between 65535 bytes"),
        ("h2_window: 1GB", "and 512 MiB"),
        ("h2_window: lots", ""),
    ] {
        one_error(&https_with(window), 2, "listeners.https.h2_window", message);
    }
    one_error(
        &https_with("header_timeot: 5s"),
        2,
        "listeners.https.header_timeot",
        "unknown key",
    );
    one_error(
        &MINIMAL.replace("  https: 127.0.0.1:8443\n", "  https: 8443\n"),
        2,
        "listeners.https",
        "expected IP:PORT",
    );
    let found = errors(&MINIMAL.replace(
        "  https: 127.0.0.1:8443\n",
        "  https: { address: nowhere }\n",
    ));
    assert_eq!(found.0[0].key, "listeners.https.address", "{found}");
}

#[test]
fn extra_listeners_take_the_same_limits() {
    let source = MINIMAL.replace(
        "  https: 127.0.0.1:8443\n",
        "  https: 127.0.0.1:8443\n  extra:\n    - { name: lb, address: 127.0.0.1:8600, max_connections: 2, idle_timeout: 2s, h2_window: 65535 }\n",
    );
    let config = ok(&source);
    assert_eq!(config.listeners[1].limits.max_connections, Some(2));
    assert_eq!(
        config.listeners[1].limits.idle_timeout,
        Duration::from_secs(2)
    );
    assert_eq!(config.listeners[1].limits.h2_window, 65_535);
}
