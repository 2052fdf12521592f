//! A `backend` (or the backend half of a `listen`) as an upstream: `server` lines (address,
//! `weight`, `maxconn`, `check`, `ssl`, `verify`, `ca-file`, `sni`, `cookie`, `disabled`,
//! `default-server`), `balance`, `cookie … insert`, `stick on src`, `option httpchk` and
//! `http-check`, `timeout connect|server|tunnel|check`, `retries`; its `http-request` and
//! `http-response` rules are kept for the routes that send to it.

use super::super::acl::AclTable;
use super::super::parse::Directive;
use super::super::values::{duration, server_address};
use super::super::yaml::{flow_map, scalar, ServerOut, UpstreamOut};
use super::headers::{self, DenyRule, HeaderRule};
use super::{generic_reason, Context, Scope};

/// A translated backend.
#[derive(Debug)]
pub struct BackendOut {
    pub name: String,
    pub line: usize,
    /// `None` when no server could be translated.
    pub upstream: Option<UpstreamOut>,
    /// A route sends to it.
    pub used: bool,
    pub header_rules: Vec<HeaderRule>,
    pub denies: Vec<DenyRule>,
}

impl BackendOut {
    /// Notes for rules no route carried (nothing sends to the backend).
    pub fn report_unapplied(&self, context: &mut Context) {
        if self.used {
            return;
        }
        for rule in &self.header_rules {
            if rule.builtin.is_none() {
                context.note(
                    rule.line,
                    format!(
                        "`{}`: not translated: no route sends to backend {}",
                        rule.text, self.name
                    ),
                );
            }
        }
        for deny in &self.denies {
            context.note(
                deny.line,
                format!(
                    "`{}`: not translated: no route sends to backend {}",
                    deny.text, self.name
                ),
            );
        }
    }
}

/// Per-server TLS as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ServerTls {
    ssl: bool,
    verify: Option<String>,
    ca: Option<String>,
    sni: Option<String>,
    crt: Option<String>,
}

/// What a server line says, after `default-server`.
#[derive(Debug, Default)]
struct ServerParams {
    check: bool,
    weight: Option<u32>,
    maxconn: Option<u32>,
    inter: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
    slowstart: Option<String>,
    cookie: Option<String>,
    disabled: bool,
    backup: bool,
    tls: ServerTls,
    /// Options that are not translated, with why.
    untranslated: Vec<String>,
}

fn number(value: Option<&String>) -> Option<u32> {
    value.and_then(|v| v.parse().ok())
}

/// Reads server options (a `default-server` line's or a `server` line's after its address).
fn server_params(params: &mut ServerParams, words: &[String]) {
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        let value = words.get(i + 1);
        let mut takes_value = true;
        match word {
            "check" => {
                params.check = true;
                takes_value = false;
            }
            "no-check" => {
                params.check = false;
                takes_value = false;
            }
            "weight" => params.weight = number(value),
            "maxconn" => params.maxconn = number(value),
            "inter" => params.inter = value.cloned(),
            "rise" => params.rise = number(value),
            "fall" => params.fall = number(value),
            "slowstart" => params.slowstart = value.cloned(),
            "cookie" => params.cookie = value.cloned(),
            "ssl" => {
                params.tls.ssl = true;
                takes_value = false;
            }
            "no-ssl" => {
                params.tls.ssl = false;
                takes_value = false;
            }
            "verify" => params.tls.verify = value.cloned(),
            "ca-file" => params.tls.ca = value.cloned(),
            "sni" => params.tls.sni = value.cloned(),
            "crt" => params.tls.crt = value.cloned(),
            "disabled" => {
                params.disabled = true;
                takes_value = false;
            }
            "enabled" => {
                params.disabled = false;
                takes_value = false;
            }
            "backup" => {
                params.backup = true;
                takes_value = false;
            }
            "check-ssl" | "no-verifyhost" | "no-tls-tickets" | "ssl-reuse" => takes_value = false,
            "alpn" | "check-alpn" | "check-sni" | "ssl-min-ver" | "ssl-max-ver" | "ciphers" | "id"
            | "fastinter" | "downinter" | "error-limit" | "on-error" | "observe" => {}
            "send-proxy" | "send-proxy-v2" | "send-proxy-v2-ssl" => {
                params.untranslated.push(format!(
                    "`{word}`: ferrogate does not send PROXY headers to servers (they get X-Forwarded-For)"
                ));
                takes_value = false;
            }
            "resolvers" | "init-addr" | "resolve-prefer" | "resolve-opts" => params.untranslated.push(format!(
                "`{word}`: ferrogate resolves a server's name at load; `discovery: {{ dns: NAME:PORT }}` re-resolves"
            )),
            "port" | "addr" => params.untranslated.push(format!(
                "`{word}`: health checks go to the server's own address"
            )),
            "maxqueue" => params.untranslated.push(
                "`maxqueue`: ferrogate's queue is per upstream (`queue: { size, timeout }`)".into(),
            ),
            other => {
                params
                    .untranslated
                    .push(format!("the server option `{other}` has no ferrogate equivalent"));
                takes_value = false;
            }
        }
        i += if takes_value { 2 } else { 1 };
    }
}

/// One `server` line as a server, with its health and TLS settings.
struct Server {
    out: ServerOut,
    params: ServerParams,
    line: usize,
}

fn server(context: &mut Context, defaults: &[String], d: &Directive) -> Option<Server> {
    let name = d.word(1).unwrap_or("?");
    let Some(address_text) = d.word(2) else {
        context.note(d.line, format!("server {name}: no address: not translated"));
        return None;
    };
    let address = match server_address(address_text) {
        Ok(address) => address,
        Err(message) => {
            context.note(d.line, format!("server {name}: {message}: not translated"));
            return None;
        }
    };
    let mut params = ServerParams::default();
    server_params(&mut params, defaults);
    params.untranslated.clear();
    server_params(&mut params, d.rest(3));
    for why in params.untranslated.drain(..) {
        context.note(d.line, format!("server {name}: {why}"));
    }
    if params.backup {
        context.note(
            d.line,
            format!("server {name} is a `backup`: ferrogate has no backup servers; it is left out (add it with `drain: true` to keep sticky clients only, or as a normal server)"),
        );
        return None;
    }
    let mut comment = format!("server {name} ({})", context.at(d.line));
    let mut drain = false;
    let mut weight = params.weight.filter(|w| *w != 1);
    if params.weight == Some(0) {
        drain = true;
        weight = None;
        comment.push_str("; weight 0: no new clients");
    } else if let Some(w) = weight.filter(|w| *w > 1000) {
        context.note(
            d.line,
            format!("server {name}: weight {w} is above ferrogate's 1000"),
        );
        weight = Some(1000);
    }
    if params.disabled {
        drain = true;
        comment.push_str("; disabled: drained");
        context.note(
            d.line,
            format!("server {name} is `disabled` (maintenance): translated as `drain: true`; `ferrogate ctl disable` takes a server out at run time"),
        );
    }
    if params.cookie.is_some() {
        comment.push_str("; its cookie value: ferrogate makes its own sticky ids");
    }
    Some(Server {
        out: ServerOut {
            address,
            weight,
            max_inflight: params.maxconn.filter(|m| *m > 0),
            drain,
            comment,
        },
        params,
        line: d.line,
    })
}

/// `balance` → `balance` (and `hash_key`).
fn balance(
    context: &mut Context,
    scope: &Scope<'_>,
    keys: &mut Vec<(String, String)>,
    comments: &mut Vec<String>,
) {
    let Some(d) = scope.find(&["balance"]) else {
        return;
    };
    let algorithm = d.word(1).unwrap_or_default();
    let (value, hash_key, note) = match algorithm {
        "roundrobin" | "static-rr" => ("round_robin", None, None),
        "leastconn" => ("least_inflight", None, None),
        "source" => ("hash", None, None),
        "random" | "random(2)" => ("p2c", None, None),
        "uri" => (
            "hash",
            None,
            Some("`balance uri`: ferrogate hashes on the client address, a header or a cookie, not the URI; translated as `balance: hash` on the client address"),
        ),
        "first" => (
            "least_inflight",
            None,
            Some("`balance first`: ferrogate has no fill-first policy; translated as least_inflight"),
        ),
        other => match other.strip_prefix("hdr(").and_then(|r| r.strip_suffix(')')) {
            Some(header) => ("hash", Some(format!("header:{header}")), None),
            None if other.starts_with("random") => (
                "p2c",
                None,
                Some("`balance random(N)`: ferrogate's p2c draws two"),
            ),
            None => {
                context.note(d.line, format!("`{}`: not translated: ferrogate balances by round_robin, least_inflight, p2c or hash", d.text()));
                return;
            }
        },
    };
    if let Some(note) = note {
        context.note(d.line, note);
    }
    comments.push(context.origin(d));
    keys.push(("balance".into(), value.into()));
    if let Some(key) = hash_key {
        keys.push(("hash_key".into(), scalar(&key)));
    }
}

/// `cookie NAME insert …` → sticky cookie; `stick on src` → sticky client address.
fn sticky(
    context: &mut Context,
    scope: &Scope<'_>,
    keys: &mut Vec<(String, String)>,
    comments: &mut Vec<String>,
) {
    if let Some(d) = scope.find(&["cookie"]) {
        let name = d.word(1).unwrap_or("fg_srv");
        let words = d.rest(2);
        let mut pairs = vec![
            ("mode".to_string(), "cookie".to_string()),
            ("cookie".to_string(), scalar(name)),
        ];
        let mut i = 0;
        while i < words.len() {
            match words[i].as_str() {
                "insert" | "indirect" | "nocache" | "httponly" | "secure" | "preserve" | "postonly" => {}
                "maxlife" | "maxidle" => {
                    if let Some(ttl) = words.get(i + 1).and_then(|v| duration(v).ok()) {
                        if !pairs.iter().any(|(k, _)| k == "ttl") {
                            pairs.push(("ttl".into(), ttl));
                        }
                    }
                    i += 1;
                }
                mode @ ("prefix" | "rewrite") => context.note(
                    d.line,
                    format!("`cookie {name} {mode}`: ferrogate inserts its own cookie (like `insert indirect nocache`) instead of changing the application's"),
                ),
                "domain" | "attr" => {
                    context.note(d.line, format!("`cookie … {}`: not translated: ferrogate's cookie has Path=/, HttpOnly, SameSite=Lax and Secure on https", words[i]));
                    i += 1;
                }
                other => context.note(d.line, format!("`cookie … {other}`: not translated")),
            }
            i += 1;
        }
        comments.push(format!(
            "{}: ferrogate's cookie is always indirect (removed before the server) and nocache, HttpOnly, Secure on https; it lasts `ttl` (3h unless maxlife/maxidle said)",
            context.origin(d)
        ));
        keys.push(("sticky".into(), flow_map(&pairs)));
        return;
    }
    let stick = scope
        .find(&["stick", "on"])
        .or_else(|| scope.find(&["stick", "match"]));
    if let Some(d) = stick {
        if d.word(2) == Some("src") {
            let mut pairs = vec![("mode".to_string(), "client_ip".to_string())];
            if let Some(table) = scope.find(&["stick-table"]) {
                let expire = table
                    .words
                    .iter()
                    .position(|w| w == "expire")
                    .and_then(|i| table.word(i + 1))
                    .and_then(|v| duration(v).ok());
                if let Some(ttl) = expire {
                    pairs.push(("ttl".into(), ttl));
                }
            }
            comments.push(context.origin(d));
            keys.push(("sticky".into(), flow_map(&pairs)));
        } else {
            context.note(d.line, format!("`{}`: not translated: ferrogate sticks on the client address, a header or its own cookie", d.text()));
        }
    }
}

/// `option httpchk` / `http-check` with servers' `check` → `health`.
fn health(
    context: &mut Context,
    scope: &Scope<'_>,
    servers: &[Server],
    keys: &mut Vec<(String, String)>,
    comments: &mut Vec<String>,
) {
    let checked: Vec<&Server> = servers.iter().filter(|s| s.params.check).collect();
    let httpchk = scope.find(&["option", "httpchk"]);
    let Some(first) = checked.first() else {
        if let Some(d) = httpchk {
            context.note(d.line, "`option httpchk`: no server has `check`, so HAProxy runs no check either; not translated");
        }
        return;
    };
    let Some(chk) = httpchk else {
        context.note(
            first.line,
            "`check` without `option httpchk` is a TCP connect check: ferrogate's active checks are HTTP GETs; add `health: { path: … }` to the upstream (failed connections still eject a server passively)",
        );
        return;
    };
    let mut path = "/".to_string();
    let args = chk.rest(2);
    match args {
        [] => {}
        [uri] => path = uri.clone(),
        [method, uri, ..] => {
            if !method.eq_ignore_ascii_case("GET") {
                context.note(
                    chk.line,
                    format!("`{}`: ferrogate checks with GET", chk.text()),
                );
            }
            path = uri.clone();
        }
    }
    if args.is_empty() {
        context.note(
            chk.line,
            "`option httpchk` without a URI checks `OPTIONS /`; ferrogate checks `GET /`",
        );
    }
    if let Some(send) = scope.find(&["http-check", "send"]) {
        if let Some(i) = send.words.iter().position(|w| w == "uri") {
            if let Some(uri) = send.word(i + 1) {
                path = uri.to_string();
            }
        }
        if let Some(i) = send.words.iter().position(|w| w == "meth") {
            if send
                .word(i + 1)
                .is_some_and(|m| !m.eq_ignore_ascii_case("GET"))
            {
                context.note(
                    send.line,
                    format!("`{}`: ferrogate checks with GET", send.text()),
                );
            }
        }
    }
    let mut pairs = vec![("path".to_string(), scalar(&path))];
    let inter = first.params.inter.clone().unwrap_or_else(|| "2s".into());
    match duration(&inter) {
        Ok(interval) => pairs.push(("interval".into(), interval)),
        Err(message) => context.note(first.line, format!("`inter {inter}`: {message}")),
    }
    if let Some(d) = scope.find(&["timeout", "check"]) {
        match d.word(2).map(duration) {
            Some(Ok(timeout)) => pairs.push(("timeout".into(), timeout)),
            _ => context.note(d.line, format!("`{}`: not a HAProxy time", d.text())),
        }
    }
    if let Some(rise) = first.params.rise {
        pairs.push(("rise".into(), rise.to_string()));
    }
    if let Some(fall) = first.params.fall {
        pairs.push(("fall".into(), fall.to_string()));
    }
    if let Some(d) = scope.find(&["http-check", "expect"]) {
        match (d.word(2), d.word(3).and_then(|s| s.parse::<u16>().ok())) {
            (Some("status"), Some(status)) => {
                pairs.push(("expect_status".into(), status.to_string()))
            }
            _ => context.note(
                d.line,
                format!(
                    "`{}`: ferrogate expects one status, or any 2xx/3xx",
                    d.text()
                ),
            ),
        }
    }
    let slowstart = checked.iter().find_map(|s| s.params.slowstart.as_deref());
    if let Some(slow) = slowstart.and_then(|s| duration(s).ok()) {
        pairs.push(("slow_start".into(), slow));
    }
    let differs = checked.iter().any(|s| {
        s.params.inter != first.params.inter
            || s.params.rise != first.params.rise
            || s.params.fall != first.params.fall
            || s.params
                .slowstart
                .as_deref()
                .is_some_and(|v| Some(v) != slowstart)
    });
    if differs {
        context.note(first.line, "servers check with different inter/rise/fall/slowstart: ferrogate's `health` is per upstream; the first server's values are used");
    }
    if checked.len() < servers.len() {
        context.note(first.line, "only some servers have `check`: ferrogate checks every server of an upstream with `health`");
    }
    comments.push(context.origin(chk));
    keys.push(("health".into(), flow_map(&pairs)));
}

/// `timeout connect|server|tunnel` → `timeouts`; `retries`.
fn timeouts(context: &mut Context, scope: &Scope<'_>, keys: &mut Vec<(String, String)>) {
    let mut pairs = Vec::new();
    for (haproxy, ferrogate) in [
        ("connect", "connect"),
        ("server", "read"),
        ("tunnel", "websocket_idle"),
    ] {
        if let Some(d) = scope.find(&["timeout", haproxy]) {
            match d.word(2).map(duration) {
                Some(Ok(value)) => pairs.push((ferrogate.to_string(), value)),
                _ => context.note(d.line, format!("`{}`: not a HAProxy time", d.text())),
            }
        }
    }
    if let Some(d) = scope.find(&["retries"]) {
        match d.word(1).and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n > 10 => {
                context.note(
                    d.line,
                    format!("`retries {n}`: ferrogate retries at most 10 times"),
                );
                keys.push(("retries".into(), "10".into()));
            }
            Some(n) => keys.push(("retries".into(), n.to_string())),
            None => context.note(d.line, format!("`{}`: not a number", d.text())),
        }
    }
    if !pairs.is_empty() {
        keys.push(("timeouts".into(), flow_map(&pairs)));
    }
}

/// Servers' `ssl` options → the upstream's `tls`.
fn tls(context: &mut Context, servers: &[Server], keys: &mut Vec<(String, String)>) {
    let Some(first) = servers.first() else {
        return;
    };
    let any = servers.iter().any(|s| s.params.tls.ssl);
    if !any {
        return;
    }
    if servers.iter().any(|s| s.params.tls != first.params.tls) {
        context.note(first.line, "servers differ in `ssl` settings: ferrogate's `tls` is per upstream; translated from the first server");
    }
    let t = &first.params.tls;
    if !t.ssl {
        return;
    }
    let mut pairs = Vec::new();
    if let Some(sni) = &t.sni {
        match sni.strip_prefix("str(").and_then(|s| s.strip_suffix(')')) {
            Some(name) => pairs.push(("sni".to_string(), scalar(name))),
            None => context.note(first.line, format!("`sni {sni}`: ferrogate sends a fixed SNI (`tls.sni`) or the server's host name")),
        }
    }
    match t.verify.as_deref() {
        Some("none") => pairs.push(("verify".into(), "false".into())),
        Some("required") | None => {}
        Some(other) => context.note(
            first.line,
            format!("`verify {other}`: not a HAProxy verify mode"),
        ),
    }
    if let Some(ca) = &t.ca {
        pairs.push(("ca".into(), scalar(ca)));
    }
    if let Some(crt) = &t.crt {
        pairs.push(("client_cert".into(), scalar(crt)));
        pairs.push(("client_key".into(), scalar(crt)));
    }
    keys.push(("tls".into(), flow_map(&pairs)));
}

/// Translates a backend (or the backend half of a listen section).
pub fn translate(context: &mut Context, scope: &Scope<'_>) -> BackendOut {
    let name = scope.name().to_string();
    let mut comments = vec![scope.title(context)];
    let defaults_server: Vec<String> = scope
        .defaults
        .into_iter()
        .chain(std::iter::once(scope.section))
        .flat_map(|s| s.directives.iter())
        .filter(|d| d.keyword() == "default-server")
        .flat_map(|d| d.rest(1).iter().cloned())
        .collect();
    let mut servers = Vec::new();
    let mut header_rules = Vec::new();
    let mut denies = Vec::new();
    let mut acls = AclTable::default();
    let backend_only = scope.section.kind == super::SectionKind::Backend;
    for d in &scope.section.directives {
        match (d.keyword(), d.word(1)) {
            ("server", _) => {
                if let Some(s) = server(context, &defaults_server, d) {
                    servers.push(s);
                }
            }
            ("acl", _) if backend_only => headers::define_acl(context, &mut acls, d),
            ("http-request" | "http-response", _) if backend_only => {
                match headers::parse_rule(context, d, &acls) {
                    headers::Parsed::Header(rule) => {
                        if let Some(why) = rule.builtin {
                            comments.push(format!("{}: {why}", context.origin(d)));
                        }
                        header_rules.push(rule);
                    }
                    headers::Parsed::Deny(rule) => denies.push(rule),
                    headers::Parsed::RedirectToHttps | headers::Parsed::Answer(_) => context.note(
                        d.line,
                        format!("`{}` in a backend: not translated: move it to the frontend", d.text()),
                    ),
                    headers::Parsed::Other | headers::Parsed::Failed => {}
                }
            }
            ("option", Some("forwardfor")) => comments.push(format!("{}: ferrogate always sends X-Forwarded-For", context.origin(d))),
            ("option", Some("redispatch")) => comments.push(format!("{}: ferrogate always retries on another server", context.origin(d))),
            ("option", Some("httpchk")) | ("http-check", _) | ("balance" | "cookie" | "stick" | "stick-table" | "retries" | "default-server" | "mode", _) => {}
            ("timeout", Some("connect" | "server" | "tunnel" | "check")) => {}
            ("timeout", Some("queue")) => context.note(d.line, "`timeout queue`: not translated: ferrogate queues only with an upstream's `queue: { size, timeout }` and servers' `max_inflight`"),
            ("hash-type" | "http-reuse" | "fullconn" | "load-server-state-from-file" | "server-template", _) => {
                context.note(d.line, format!("`{}`: not translated: ferrogate has no equivalent", d.text()))
            }
            _ if backend_only => context.note(d.line, format!("`{}`: not translated: {}", d.text(), generic_reason(d))),
            _ => {}
        }
    }
    let mut keys = Vec::new();
    balance(context, scope, &mut keys, &mut comments);
    sticky(context, scope, &mut keys, &mut comments);
    health(context, scope, &servers, &mut keys, &mut comments);
    timeouts(context, scope, &mut keys);
    tls(context, &servers, &mut keys);
    let upstream = if servers.is_empty() {
        if backend_only
            || scope
                .section
                .directives
                .iter()
                .any(|d| d.keyword() == "server")
        {
            context.note(
                scope.section.line,
                format!(
                    "backend {name} has no server ferrogate can use: routes to it are left out"
                ),
            );
        }
        None
    } else {
        Some(UpstreamOut {
            comments,
            name: name.clone(),
            servers: servers.into_iter().map(|s| s.out).collect(),
            keys,
        })
    };
    BackendOut {
        name,
        line: scope.section.line,
        upstream,
        used: false,
        header_rules,
        denies,
    }
}
