//! A frontend's `bind` lines as listeners: the first TLS bind is `https`, the plain one that
//! redirects (or is on port 80) `http`, the others extra listeners named after their frontend,
//! with `crt` certificates, `ca-file`/`verify` client certificates, `accept-proxy`, and the
//! frontend's `maxconn` and request timeouts; and the route names taken so far.

use std::collections::HashMap;
use std::path::Path;

use super::super::parse::Directive;
use super::super::values::{bind_address, duration, name as clean_name};
use super::super::yaml::{flow_map, scalar, CertOut, ListenerOut};
use super::{Context, Scope};

/// The listeners every frontend's binds became.
#[derive(Debug, Default)]
pub struct Listeners {
    pub listeners: Vec<ListenerOut>,
    /// Per frontend (by its section's line): its listeners (name, TLS) and certificates.
    pub(super) binds: HashMap<usize, FrontendBinds>,
    /// Route names taken so far.
    route_names: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct FrontendBinds {
    pub(super) listeners: Vec<(String, bool)>,
    pub(super) certificates: Vec<CertOut>,
    /// The line of a plain bind, for notes about the redirect to https.
    pub(super) plain_line: Option<usize>,
}

impl Listeners {
    pub(super) fn https_exists(&self) -> bool {
        self.listeners.iter().any(|l| l.name == "https")
    }

    pub(super) fn default_name(&self) -> &'static str {
        if self.https_exists() {
            "https"
        } else {
            "http"
        }
    }

    pub(super) fn listener_tls(&self, listener: &Option<String>) -> bool {
        match listener {
            None => self.https_exists(),
            Some(name) => self.listeners.iter().any(|l| l.name == *name && l.tls),
        }
    }

    pub(super) fn unique_route_name(&mut self, base: &str) -> String {
        let base = clean_name(base);
        let mut name = base.clone();
        let mut n = 2;
        while self.route_names.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.route_names.push(name.clone());
        name
    }
}

/// Whether a frontend only serves HAProxy's stats page.
fn stats_only(scope: &Scope<'_>) -> bool {
    let has = |keyword: &str| {
        scope
            .section
            .directives
            .iter()
            .any(|d| d.keyword() == keyword)
    };
    has("stats") && !has("use_backend") && !has("default_backend") && !has("server")
}

/// Bind options that need nothing in ferrogate.
const QUIET_BIND_FLAGS: &[&str] = &[
    "v4v6",
    "v6only",
    "tfo",
    "defer-accept",
    "transparent",
    "strict-sni",
];
/// Bind options with a value that need nothing in ferrogate.
const QUIET_BIND_OPTIONS: &[&str] = &[
    "name",
    "process",
    "thread",
    "id",
    "backlog",
    "interface",
    "mss",
    "label",
];

/// One `bind` line: addresses and what its options say.
#[derive(Debug, Default)]
struct Bind {
    addresses: Vec<String>,
    tls: bool,
    crts: Vec<String>,
    client_ca: Option<String>,
    verify: Option<String>,
    accept_proxy: bool,
    alpn: Option<String>,
    untranslated: Vec<String>,
}

fn parse_bind(context: &mut Context, d: &Directive) -> Bind {
    let mut bind = Bind::default();
    for address in d.word(1).unwrap_or_default().split(',') {
        match bind_address(address) {
            Ok(a) => bind.addresses.push(a),
            Err(message) => context.note(d.line, format!("bind: {message}: not translated")),
        }
    }
    let words = d.rest(2);
    let mut i = 0;
    while i < words.len() {
        let option = words[i].as_str();
        let value = words.get(i + 1).cloned();
        let mut step = 2;
        match option {
            "ssl" => {
                bind.tls = true;
                step = 1;
            }
            "crt" => bind.crts.extend(value),
            "ca-file" => bind.client_ca = value,
            "verify" => bind.verify = value,
            "alpn" | "npn" => bind.alpn = value,
            "accept-proxy" => {
                bind.accept_proxy = true;
                step = 1;
            }
            "crt-list" => bind.untranslated.push(
                "`crt-list`: list each certificate under tls.certificates (SNI picks by the certificates' names)".into(),
            ),
            "ssl-min-ver" | "ssl-max-ver" | "ciphers" | "ciphersuites" | "curves" | "ecdhe" | "sigalgs" => bind.untranslated.push(format!(
                "`{option}`: ferrogate's TLS settings are fixed (TLS 1.2 and 1.3, rustls' cipher suites)"
            )),
            "maxconn" => bind.untranslated.push("`maxconn` on a bind: set the frontend's maxconn (max_connections)".into()),
            flag if QUIET_BIND_FLAGS.contains(&flag) || flag.starts_with("no-") || flag.starts_with("force-") || flag == "prefer-client-ciphers" || flag == "allow-0rtt" => step = 1,
            quiet if QUIET_BIND_OPTIONS.contains(&quiet) => {}
            other => {
                bind.untranslated.push(format!("`{other}` has no ferrogate equivalent"));
                step = 1;
            }
        }
        i += step;
    }
    bind
}

/// Listener settings the frontend's own (or inherited) directives give: request timeouts and
/// `maxconn`.
fn listener_limits(context: &mut Context, scope: &Scope<'_>) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    if let Some(d) = scope.find(&["maxconn"]) {
        match d.word(1).and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n > 0 => keys.push(("max_connections".into(), n.to_string())),
            _ => context.note(d.line, format!("`{}`: not a connection count", d.text())),
        }
    }
    for (haproxy, ferrogate) in [
        ("http-request", "header_timeout"),
        ("http-keep-alive", "idle_timeout"),
    ] {
        if let Some(d) = scope.find(&["timeout", haproxy]) {
            match d.word(2).map(duration) {
                Some(Ok(value)) => keys.push((ferrogate.to_string(), value)),
                _ => context.note(d.line, format!("`{}`: not a HAProxy time", d.text())),
            }
        }
    }
    keys
}

/// The certificate of `crt PATH`: a file, or a directory (noted).
fn certificate(
    context: &mut Context,
    line: usize,
    path: &str,
    names: &mut Vec<String>,
) -> Option<CertOut> {
    let full = match (&context.crt_base, Path::new(path).is_absolute()) {
        (Some(base), false) => format!("{}/{path}", base.trim_end_matches('/')),
        _ => path.to_string(),
    };
    if full.ends_with('/') || Path::new(&full).is_dir() {
        context.note(
            line,
            format!("`crt {path}` names a directory: ferrogate lists each certificate file under tls.certificates (cert and key may be the same combined PEM), or issues them by ACME"),
        );
        return None;
    }
    if !Path::new(&full).is_absolute() {
        context.note(line, format!("`crt {path}`: a relative path; ferrogate reads it relative to its configuration file's directory"));
    }
    let stem = Path::new(&full)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("certificate");
    let base = clean_name(stem);
    let mut name = base.clone();
    let mut n = 2;
    while names.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    names.push(name.clone());
    Some(CertOut::File {
        comments: vec![format!(
            "crt {path} ({}): HAProxy's combined PEM (chain and key in one file)",
            context.at(line)
        )],
        name,
        path: full,
        disabled: false,
    })
}

/// Whether the section sends plain requests to https (`[http-request] redirect scheme https`):
/// its plain bind is the one ferrogate's `http` listener replaces, whatever its port.
fn redirects_to_https(scope: &Scope<'_>) -> bool {
    scope.section.directives.iter().any(|d| {
        let words: Vec<&str> = d.words.iter().map(String::as_str).collect();
        matches!(
            words.as_slice(),
            ["http-request", "redirect", "scheme", "https", ..]
                | ["redirect", "scheme", "https", ..]
        )
    })
}

/// Turns every frontend's binds into listeners: the first TLS bind is `https`, the first plain
/// one on port 80 (or any port when nothing is TLS, or in a frontend that redirects to https) is `http`, the others are extra listeners
/// named after their frontend.
pub fn assign_listeners(context: &mut Context, frontends: &[Scope<'_>]) -> Listeners {
    let mut out = Listeners::default();
    let mut cert_names = Vec::new();
    let binds: Vec<(usize, &Scope<'_>, &Directive)> = frontends
        .iter()
        .flat_map(|scope| {
            scope
                .section
                .directives
                .iter()
                .filter(|d| d.keyword() == "bind")
                .map(move |d| (scope.section.line, scope, d))
        })
        .collect();
    let any_tls = binds
        .iter()
        .any(|(_, _, d)| d.words.iter().any(|w| w == "ssl"));
    let mut limits_of: HashMap<usize, Vec<(String, String)>> = HashMap::new();
    for (section_line, scope, d) in binds {
        if stats_only(scope) {
            context.note(
                d.line,
                format!("`{}` serves HAProxy's stats page: ferrogate's is /status on the admin listener; not translated", d.text()),
            );
            continue;
        }
        let bind = parse_bind(context, d);
        let limits = limits_of
            .entry(section_line)
            .or_insert_with(|| listener_limits(context, scope))
            .clone();
        let entry = out.binds.entry(section_line).or_default();
        for why in &bind.untranslated {
            context.note(d.line, format!("bind: {why}"));
        }
        let mut keys = limits;
        if bind.accept_proxy {
            keys.push(("proxy_protocol".into(), "true".into()));
            keys.push(("proxy_protocol_from".into(), "[0.0.0.0/0, \"::/0\"]".into()));
            context.note(d.line, "bind `accept-proxy`: translated with proxy_protocol_from: [0.0.0.0/0, ::/0]; narrow it to your balancers' addresses");
        }
        if bind.tls {
            match (&bind.client_ca, bind.verify.as_deref()) {
                (Some(ca), Some(mode @ ("required" | "optional"))) => {
                    keys.push((
                        "client_auth".into(),
                        flow_map(&[("ca".into(), scalar(ca)), ("mode".into(), mode.into())]),
                    ));
                }
                (Some(ca), None) => {
                    keys.push((
                        "client_auth".into(),
                        flow_map(&[
                            ("ca".into(), scalar(ca)),
                            ("mode".into(), "required".into()),
                        ]),
                    ));
                }
                (_, Some("none")) | (None, None) => {}
                (None, Some(mode)) => context.note(
                    d.line,
                    format!("bind `verify {mode}` without `ca-file`: not translated"),
                ),
                (Some(_), Some(mode)) => context.note(
                    d.line,
                    format!("bind `verify {mode}`: not a HAProxy verify mode"),
                ),
            }
            for crt in &bind.crts {
                if let Some(cert) = certificate(context, d.line, crt, &mut cert_names) {
                    entry.certificates.push(cert);
                }
            }
        } else if !bind.crts.is_empty() {
            context.note(
                d.line,
                "bind `crt` without `ssl`: HAProxy does not use it either",
            );
        }
        for address in bind.addresses {
            let port_80 = address.ends_with(":80");
            let taken = |name: &str| out.listeners.iter().any(|l| l.name == name);
            let name = if bind.tls && !taken("https") {
                "https".to_string()
            } else if !bind.tls
                && !taken("http")
                && (port_80 || !any_tls || redirects_to_https(scope))
            {
                if !port_80 {
                    entry.plain_line.get_or_insert(d.line);
                }
                "http".to_string()
            } else {
                let base = clean_name(scope.name());
                let mut name = base.clone();
                let mut n = 2;
                while taken(&name) || name == "http" || name == "https" {
                    name = format!("{base}-{n}");
                    n += 1;
                }
                name
            };
            if name == "http" {
                entry.plain_line.get_or_insert(d.line);
            }
            let mut comments = vec![format!("{}: {}", scope.title(context), context.origin(d))];
            if let Some(alpn) = &bind.alpn {
                comments.push(format!(
                    "alpn {alpn}: ferrogate offers h2 and http/1.1 on TLS listeners"
                ));
            }
            entry.listeners.push((name.clone(), bind.tls));
            out.listeners.push(ListenerOut {
                comments,
                name,
                address,
                tls: bind.tls,
                keys: keys.clone(),
            });
        }
    }
    out
}
