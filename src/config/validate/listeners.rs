//! `listeners`: the built-in `http` and `https` listeners and the named extras.

use std::net::SocketAddr;

use serde_yaml::Value;

use super::Checker;
use crate::config::model::{Listener, LISTENER_HTTP, LISTENER_HTTPS};
use crate::config::raw::RawListeners;

/// The checked listeners, and what routes need to know about them.
pub(super) struct Listeners {
    /// Valid listeners: `http`, `https`, then the extras in file order.
    pub listeners: Vec<Listener>,
    /// Every declared listener name, valid or not; `None` when the section did not decode (then
    /// route references are not checked, to avoid errors that only echo the first one).
    pub names: Option<Vec<String>>,
    /// The listener serving routes that name none.
    pub default_name: &'static str,
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
            };
        }
        return Listeners {
            listeners: Vec::new(),
            names: None,
            default_name: LISTENER_HTTPS,
        };
    };
    let has_https = raw.https.is_some();
    let mut declared: Vec<Declared> = Vec::new();
    if let Some(address) = raw.http {
        declared.push(Declared {
            name: LISTENER_HTTP.into(),
            path: "listeners.http".into(),
            address,
            tls: false,
            redirect_to_https: has_https,
            proxy_protocol: None,
        });
    }
    if let Some(address) = raw.https {
        declared.push(Declared {
            name: LISTENER_HTTPS.into(),
            path: "listeners.https".into(),
            address,
            tls: true,
            redirect_to_https: false,
            proxy_protocol: None,
        });
    }
    let mut names = declared.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
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
        let from_path = format!("{path}.proxy_protocol_from");
        let from = checker.cidr_list(&from_path, extra.proxy_protocol_from.as_deref());
        let proxy_protocol = match (extra.proxy_protocol, extra.proxy_protocol_from.is_some()) {
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
        declared.push(Declared {
            name: extra.name,
            path: format!("{path}.address"),
            address: extra.address,
            tls: extra.tls,
            redirect_to_https: false,
            proxy_protocol,
        });
    }

    let mut listeners: Vec<Listener> = Vec::with_capacity(declared.len());
    for declared in declared {
        let path = declared.path;
        let Ok(address) = declared.address.parse::<SocketAddr>() else {
            checker.at_value(&path, bad_address(&declared.address));
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
            proxy_protocol: declared.proxy_protocol,
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
    }
}

/// A listener as written, before its address is parsed.
struct Declared {
    name: String,
    /// Key path of its address.
    path: String,
    address: String,
    tls: bool,
    redirect_to_https: bool,
    proxy_protocol: Option<Vec<crate::config::model::Cidr>>,
}
