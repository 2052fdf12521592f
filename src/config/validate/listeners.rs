//! `listeners`: the built-in `http` and `https` listeners (an address, or a mapping with options)
//! and the named extras; PROXY protocol, connection limits, the HTTP/2 window and client
//! certificates (`client_auth`, TLS listeners only; its CA file is read by `resolve`) per listener.

use std::net::SocketAddr;

use serde_yaml::Value;

use super::Checker;
use crate::config::draft::DraftClientAuth;
use crate::config::duration::parse_duration;
use crate::config::model::ClientAuthMode;
use crate::config::model::{
    Cidr, Listener, ListenerLimits, LISTENER_HTTP, LISTENER_HTTPS, MAX_H2_WINDOW,
    MAX_HEADERS_LIMIT, MIN_H2_WINDOW,
};
use crate::config::raw::{RawBuiltinListener, RawClientAuth, RawClientAuthMode, RawListeners};

/// The checked listeners, and what routes need to know about them.
pub(super) struct Listeners {
    /// Valid listeners: `http`, `https`, then the extras in file order.
    pub listeners: Vec<Listener>,
    /// Every declared listener name, valid or not; `None` when the section did not decode (then
    /// route references are not checked, to avoid errors that only echo the first one).
    pub names: Option<Vec<String>>,
    /// The listener serving routes that name none.
    pub default_name: &'static str,
    /// Names of the listeners that ask for client certificates.
    pub client_auth: Vec<String>,
    /// Their `client_auth` settings, CA files not read yet.
    pub client_auths: Vec<DraftClientAuth>,
}

/// The message for an address that is not `IP:PORT`.
pub(super) fn bad_address(text: &str) -> String {
    format!("invalid address `{text}`: expected IP:PORT such as 0.0.0.0:443 or [::]:443")
}

pub(super) fn check(checker: &mut Checker, value: Option<&Value>) -> Listeners {
    let Some(raw) = checker.decode::<RawListeners>(value, "listeners") else {
        if value.is_none_or(Value::is_null) {
            checker.at_key("listeners", "at least one listener is required");
            return Listeners {
                listeners: Vec::new(),
                names: Some(Vec::new()),
                default_name: LISTENER_HTTPS,
                client_auth: Vec::new(),
                client_auths: Vec::new(),
            };
        }
        return Listeners {
            listeners: Vec::new(),
            names: None,
            default_name: LISTENER_HTTPS,
            client_auth: Vec::new(),
            client_auths: Vec::new(),
        };
    };
    let has_https = raw.https.is_some();
    let mut declared: Vec<Declared> = Vec::new();
    // Every declared name, also of listeners whose options did not decode.
    let mut names: Vec<String> = Vec::new();
    for (name, value, tls) in [
        (LISTENER_HTTP, raw.http, false),
        (LISTENER_HTTPS, raw.https, true),
    ] {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            continue;
        };
        names.push(name.into());
        let path = format!("listeners.{name}");
        // `http: IP:PORT`, or a mapping with `address` and the listener options.
        let options = match value {
            Value::String(address) => Options::plain(address, path.clone()),
            other if !other.is_mapping() => {
                checker.at_value(
                    &path,
                    "expected IP:PORT, or a mapping with `address` and listener options",
                );
                continue;
            }
            other => {
                let Some(raw) = checker.decode::<RawBuiltinListener>(Some(&other), &path) else {
                    continue;
                };
                let keys = OptionKeys {
                    proxy_protocol: raw.proxy_protocol,
                    proxy_protocol_from: raw.proxy_protocol_from,
                    max_connections: raw.max_connections,
                    max_headers: raw.max_headers,
                    header_timeout: raw.header_timeout,
                    idle_timeout: raw.idle_timeout,
                    h2_window: raw.h2_window,
                    client_auth: raw.client_auth,
                };
                options(checker, &path, raw.address, tls, keys)
            }
        };
        declared.push(Declared {
            name: name.into(),
            tls,
            redirect_to_https: !tls && has_https,
            options,
        });
    }
    for (index, extra) in raw.extra.into_iter().enumerate() {
        let path = format!("listeners.extra[{index}]");
        let name_path = format!("{path}.name");
        if extra.name.is_empty() {
            checker.at_value(&name_path, "a listener name must not be empty");
        } else if extra.name == LISTENER_HTTP || extra.name == LISTENER_HTTPS {
            let message = format!(
                "`{}` is the name of a built-in listener; choose another name",
                extra.name
            );
            checker.at_value(&name_path, message);
        } else if names.contains(&extra.name) {
            checker.at_value(
                &name_path,
                format!("duplicate listener name `{}`", extra.name),
            );
        }
        names.push(extra.name.clone());
        let keys = OptionKeys {
            proxy_protocol: extra.proxy_protocol,
            proxy_protocol_from: extra.proxy_protocol_from,
            max_connections: extra.max_connections,
            max_headers: extra.max_headers,
            header_timeout: extra.header_timeout,
            idle_timeout: extra.idle_timeout,
            h2_window: extra.h2_window,
            client_auth: extra.client_auth,
        };
        let options = options(checker, &path, extra.address, extra.tls, keys);
        declared.push(Declared {
            name: extra.name,
            tls: extra.tls,
            redirect_to_https: false,
            options,
        });
    }

    let mut listeners: Vec<Listener> = Vec::with_capacity(declared.len());
    let mut client_auths = Vec::new();
    for mut declared in declared {
        if let Some(mut auth) = declared.options.client_auth.take() {
            auth.listener = declared.name.clone();
            client_auths.push(auth);
        }
        let path = declared.options.address_path;
        let Ok(address) = declared.options.address.parse::<SocketAddr>() else {
            checker.at_value(&path, bad_address(&declared.options.address));
            continue;
        };
        if let Some(other) = listeners.iter().find(|l| l.address == address) {
            let message = format!(
                "address {address} is already used by listener `{}`",
                other.name
            );
            checker.at_value(&path, message);
            continue;
        }
        listeners.push(Listener {
            name: declared.name,
            address,
            tls: declared.tls,
            redirect_to_https: declared.redirect_to_https,
            proxy_protocol: declared.options.proxy_protocol,
            limits: declared.options.limits,
            client_auth: None,
        });
    }
    if names.is_empty() {
        checker.at_key("listeners", "at least one listener is required");
    }
    let has_http = names.iter().any(|n| n == LISTENER_HTTP);
    Listeners {
        listeners,
        names: Some(names),
        default_name: if has_http && !has_https {
            LISTENER_HTTP
        } else {
            LISTENER_HTTPS
        },
        client_auth: client_auths.iter().map(|a| a.listener.clone()).collect(),
        client_auths,
    }
}

/// A listener as written, before its address is parsed.
struct Declared {
    name: String,
    tls: bool,
    redirect_to_https: bool,
    options: Options,
}

/// The checked options of one listener.
struct Options {
    address: String,
    /// Key path of its address.
    address_path: String,
    proxy_protocol: Option<Vec<Cidr>>,
    limits: ListenerLimits,
    client_auth: Option<DraftClientAuth>,
}

impl Options {
    /// A listener written as a bare address.
    fn plain(address: String, address_path: String) -> Self {
        Self {
            address,
            address_path,
            proxy_protocol: None,
            limits: ListenerLimits::default(),
            client_auth: None,
        }
    }
}

/// The option keys shared by the built-in and the extra listeners.
struct OptionKeys {
    proxy_protocol: bool,
    proxy_protocol_from: Option<Vec<String>>,
    max_connections: Option<u32>,
    max_headers: Option<u32>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    h2_window: Option<Value>,
    client_auth: Option<RawClientAuth>,
}

/// Checks the options of the listener mapping at `path` (`tls`: whether it is a TLS listener).
fn options(
    checker: &mut Checker,
    path: &str,
    address: String,
    tls: bool,
    keys: OptionKeys,
) -> Options {
    let from_path = format!("{path}.proxy_protocol_from");
    let from = checker.cidr_list(&from_path, keys.proxy_protocol_from.as_deref());
    let proxy_protocol = match (keys.proxy_protocol, keys.proxy_protocol_from.is_some()) {
        (true, true) => Some(from),
        (true, false) => {
            checker.at_key(
                &format!("{path}.proxy_protocol"),
                "proxy_protocol needs `proxy_protocol_from: [CIDR, ...]` naming the balancers allowed to send PROXY headers",
            );
            None
        }
        (false, true) => {
            checker.at_key(
                &from_path,
                "proxy_protocol_from has no effect without `proxy_protocol: true`",
            );
            None
        }
        (false, false) => None,
    };
    let mut limits = ListenerLimits::default();
    match keys.max_connections {
        Some(0) => checker.at_value(&format!("{path}.max_connections"), "must be at least 1"),
        other => limits.max_connections = other,
    }
    match keys.max_headers {
        Some(n) if !(1..=MAX_HEADERS_LIMIT).contains(&n) => checker.at_value(
            &format!("{path}.max_headers"),
            format!("must be between 1 and {MAX_HEADERS_LIMIT}"),
        ),
        Some(n) => limits.max_headers = n,
        None => {}
    }
    for (key, text, slot) in [
        (
            "header_timeout",
            keys.header_timeout,
            &mut limits.header_timeout,
        ),
        ("idle_timeout", keys.idle_timeout, &mut limits.idle_timeout),
    ] {
        let Some(text) = text else {
            continue;
        };
        match parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                checker.at_value(&format!("{path}.{key}"), "must be longer than 0s")
            }
            Ok(d) => *slot = d,
            Err(message) => checker.at_value(&format!("{path}.{key}"), message),
        }
    }
    if let Some(value) = keys.h2_window {
        let key = format!("{path}.h2_window");
        if let Some(size) = checker.size(&key, &value) {
            match u32::try_from(size) {
                Ok(window) if (MIN_H2_WINDOW..=MAX_H2_WINDOW).contains(&window) => {
                    limits.h2_window = window;
                }
                _ => checker.at_value(
                    &key,
                    format!(
                        "must be between {MIN_H2_WINDOW} bytes (HTTP/2's default) and {} MiB",
                        MAX_H2_WINDOW >> 20
                    ),
                ),
            }
        }
    }
    let client_auth = keys
        .client_auth
        .and_then(|raw| client_auth(checker, &format!("{path}.client_auth"), tls, raw));
    Options {
        address,
        address_path: format!("{path}.address"),
        proxy_protocol,
        limits,
        client_auth,
    }
}

/// `client_auth` at `path` of a listener (`tls`: whether it is a TLS one).
fn client_auth(
    checker: &mut Checker,
    path: &str,
    tls: bool,
    raw: RawClientAuth,
) -> Option<DraftClientAuth> {
    if !tls {
        checker.at_key(
            path,
            "client certificates need a TLS listener (`https`, or an extra listener with `tls: true`)",
        );
        return None;
    }
    let ca_path = format!("{path}.ca");
    if raw.ca.is_empty() {
        checker.at_value(&ca_path, "name the PEM file of the client CAs");
        return None;
    }
    let mode = match raw.mode.unwrap_or(RawClientAuthMode::Required) {
        RawClientAuthMode::Required => ClientAuthMode::Required,
        RawClientAuthMode::Optional => ClientAuthMode::Optional,
    };
    Some(DraftClientAuth {
        listener: String::new(),
        at: ca_path,
        mode,
        ca: checker.named_file(&raw.ca),
    })
}
