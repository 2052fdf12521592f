//! From HAProxy sections to a ferrogate [`Document`]: `global` (threads, `crt-base`),
//! `defaults` (inherited by the sections after it, or named by `from`), backends (and `listen`
//! sections) to upstreams, frontends (and `listen` sections) to listeners and routes, the
//! certbot challenge backend to built-in ACME. Every directive is translated, said to be
//! ferrogate's default (a comment), or reported as a [`Note`] with its line.

mod backend;
mod frontend;
mod headers;
mod listeners;
mod spec;

use std::collections::HashMap;

use super::parse::{Directive, HaproxyConfig, Section, SectionKind};
use super::yaml::{Action, CertOut, Document};
use backend::BackendOut;
use frontend::FrontendOut;

/// Something of the HAProxy file that was not translated, or only approximately: its line and
/// what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    pub message: String,
}

/// The translated document and the notes.
#[derive(Debug, Clone)]
pub struct Translation {
    pub document: Document,
    pub notes: Vec<Note>,
}

/// What every part of the translation shares: the file's name for comments, and the notes.
#[derive(Debug)]
pub struct Context {
    /// The file's name as comments cite it (`haproxy.cfg`).
    pub label: String,
    pub notes: Vec<Note>,
    /// `crt-base` from `global`: where relative `crt` paths live.
    pub crt_base: Option<String>,
    /// Comments for the top of the file (global and defaults equivalents).
    pub header: Vec<String>,
}

impl Context {
    /// `label:line`, for comments.
    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.label)
    }

    pub fn note(&mut self, line: usize, message: impl Into<String>) {
        self.notes.push(Note {
            line,
            message: message.into(),
        });
    }

    /// `what (label:line)`, for a comment naming a directive.
    pub fn origin(&self, directive: &Directive) -> String {
        format!("{} ({})", directive.text(), self.at(directive.line))
    }
}

/// A section with the defaults it inherits.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub section: &'a Section,
    pub defaults: Option<&'a Section>,
}

impl<'a> Scope<'a> {
    /// The section's name (or `unnamed`).
    pub fn name(&self) -> &'a str {
        self.section.name.as_deref().unwrap_or("unnamed")
    }

    /// `frontend NAME (label:line)`.
    pub fn title(&self, context: &Context) -> String {
        format!(
            "{} {} ({})",
            self.section.kind.keyword(),
            self.name(),
            context.at(self.section.line)
        )
    }

    /// The last directive of the section whose first words are `words`, else the defaults'.
    pub fn find(&self, words: &[&str]) -> Option<&'a Directive> {
        let matches = |d: &&Directive| words.iter().enumerate().all(|(i, w)| d.word(i) == Some(*w));
        self.section
            .directives
            .iter()
            .rev()
            .find(matches)
            .or_else(|| self.defaults?.directives.iter().rev().find(matches))
    }

    /// Whether the section is in HTTP mode (own `mode`, else the defaults'; HAProxy's default
    /// is tcp).
    pub fn mode(&self) -> Option<&'a str> {
        self.find(&["mode"]).and_then(|d| d.word(1))
    }
}

/// What the translation knows of each backend: for routes, upstreams and ACME.
#[derive(Debug, Default)]
pub struct Backends {
    pub by_name: HashMap<String, BackendOut>,
    pub order: Vec<String>,
}

/// Translates a parsed HAProxy file into `dialect`'s keys; `label` names it in comments.
pub fn translate(config: &HaproxyConfig, label: &str) -> Translation {
    let mut context = Context {
        label: label.to_string(),
        notes: Vec::new(),
        crt_base: None,
        header: Vec::new(),
    };
    for problem in &config.problems {
        context.note(problem.line, format!("skipped: {}", problem.message));
    }
    let mut document = Document::default();
    for section in config
        .sections
        .iter()
        .filter(|s| s.kind == SectionKind::Global)
    {
        global(&mut context, &mut document, section);
    }

    // Each section inherits the defaults section before it, or the one it names with `from`.
    let mut scopes = Vec::new();
    let mut current: Option<&Section> = None;
    let mut named: HashMap<&str, &Section> = HashMap::new();
    for section in &config.sections {
        match &section.kind {
            SectionKind::Global => {}
            SectionKind::Defaults => {
                defaults(&mut context, section);
                current = Some(section);
                if let Some(name) = &section.name {
                    named.insert(name, section);
                }
            }
            SectionKind::Frontend | SectionKind::Backend | SectionKind::Listen => {
                let defaults = match &section.from {
                    Some(from) => match named.get(from.as_str()) {
                        Some(found) => Some(*found),
                        None => {
                            context.note(
                                section.line,
                                format!("no defaults section named `{from}` before this one"),
                            );
                            current
                        }
                    },
                    None => current,
                };
                scopes.push(Scope { section, defaults });
            }
            SectionKind::Other(keyword) => context.note(
                section.line,
                format!("the `{keyword}` section is not translated: ferrogate has no equivalent"),
            ),
        }
    }

    let mut backends = Backends::default();
    let http_scopes: Vec<Scope<'_>> = scopes
        .iter()
        .copied()
        .filter(|scope| http_mode(&mut context, scope))
        .collect();
    for scope in &http_scopes {
        if matches!(
            scope.section.kind,
            SectionKind::Backend | SectionKind::Listen
        ) {
            let out = backend::translate(&mut context, scope);
            backends.order.push(out.name.clone());
            backends.by_name.insert(out.name.clone(), out);
        }
    }
    let frontends: Vec<Scope<'_>> = http_scopes
        .iter()
        .copied()
        .filter(|s| matches!(s.section.kind, SectionKind::Frontend | SectionKind::Listen))
        .collect();
    let mut listeners = listeners::assign_listeners(&mut context, &frontends);
    let mut translated: Vec<FrontendOut> = Vec::new();
    for scope in &frontends {
        translated.push(frontend::translate(
            &mut context,
            scope,
            &mut listeners,
            &mut backends,
        ));
    }
    assemble(&mut context, &mut document, listeners, translated, backends);
    context.notes.sort_by_key(|n| n.line);
    let mut seen = std::collections::HashSet::new();
    context
        .notes
        .retain(|n| seen.insert((n.line, n.message.clone())));
    document.header.splice(0..0, header_lines(label));
    document.header.extend(context.header.iter().cloned());
    Translation {
        document,
        notes: context.notes,
    }
}

fn header_lines(label: &str) -> Vec<String> {
    vec![
        format!("ferrogate configuration translated by `ferrogate import-haproxy` from {label}."),
        format!("Each part names the {label} lines it came from; what could not be translated was"),
        format!("listed on stderr as {label}:LINE. Check this file with `ferrogate check --config FILE`."),
    ]
}

/// Whether a frontend, backend or listen section is translated (HTTP mode).
fn http_mode(context: &mut Context, scope: &Scope<'_>) -> bool {
    match scope.mode() {
        Some("http") => true,
        Some(other) => {
            context.note(
                scope.section.line,
                format!(
                    "{} {} is in `mode {other}`: ferrogate proxies HTTP only; the section is not translated",
                    scope.section.kind.keyword(),
                    scope.name()
                ),
            );
            false
        }
        None => {
            context.note(
                scope.section.line,
                format!(
                    "{} {} has no `mode` (HAProxy's default is tcp); translated as `mode http`",
                    scope.section.kind.keyword(),
                    scope.name()
                ),
            );
            true
        }
    }
}

/// `global`: `nbthread` → `workers`, `crt-base` kept for `crt` paths, the rest noted.
fn global(context: &mut Context, document: &mut Document, section: &Section) {
    for d in &section.directives {
        let reason = match d.keyword() {
            "nbthread" => match d.word(1).and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if n > 0 => {
                    document.workers = Some((n, context.origin(d)));
                    continue;
                }
                _ => "its value is not a thread count",
            },
            "crt-base" => {
                context.crt_base = d.word(1).map(str::to_string);
                continue;
            }
            "daemon" | "master-worker" => "ferrogate runs in the foreground under systemd or a container runtime",
            "user" | "group" | "uid" | "gid" => "ferrogate's systemd unit runs it as a dynamic user with CAP_NET_BIND_SERVICE",
            "chroot" => "the systemd unit's sandbox (ProtectSystem=strict) takes its place",
            "pidfile" => "systemd tracks the process (Type=notify)",
            "log" | "log-send-hostname" | "log-tag" => "ferrogate logs to stderr (the journal); `log: { format: json }` for JSON lines",
            "maxconn" => "limit connections per listener with `max_connections` (listeners.* as a mapping) and per client with `max_connections_per_ip`",
            "stats" => "the runtime API and status page are on the admin listener (`ferrogate ctl`, `/status`)",
            "ssl-default-bind-ciphers" | "ssl-default-bind-ciphersuites" | "ssl-default-bind-options"
            | "ssl-default-server-ciphers" | "ssl-default-server-ciphersuites" | "ssl-default-server-options"
            | "ssl-dh-param-file" | "tune.ssl.default-dh-param" => {
                "ferrogate's TLS settings are fixed: TLS 1.2 and 1.3 with rustls' safe cipher suites, no DH parameters"
            }
            "ca-base" => "ferrogate's paths are absolute or relative to its configuration file",
            "ssl-server-verify" => "set `verify` in an upstream's `tls` instead",
            keyword if keyword.starts_with("tune.") => "ferrogate has no tuning knob for it",
            _ => "ferrogate has no equivalent",
        };
        context.note(
            d.line,
            format!("global `{}`: not translated: {reason}", d.text()),
        );
    }
}

/// Keywords sections take from `defaults` (reported by the section that uses them, not here).
const INHERITED: &[&str] = &[
    "mode",
    "balance",
    "retries",
    "default-server",
    "cookie",
    "http-check",
    "maxconn",
];

/// `defaults`: what sections inherit is translated where it is used; the rest is reported
/// here, once.
fn defaults(context: &mut Context, section: &Section) {
    let title = format!("defaults ({})", context.at(section.line));
    for d in &section.directives {
        let keyword = d.keyword();
        if INHERITED.contains(&keyword) {
            continue;
        }
        match (keyword, d.word(1)) {
            ("timeout", Some("connect" | "server" | "tunnel" | "check" | "http-request" | "http-keep-alive")) => {}
            ("timeout", Some("client")) => context.note(
                d.line,
                "`timeout client`: not translated: ferrogate bounds a request head with `header_timeout` and an idle connection with `idle_timeout`; a client's silence during a request is bounded by the upstream's `timeouts.read`",
            ),
            ("timeout", Some("queue")) => context.note(
                d.line,
                "`timeout queue`: not translated: ferrogate queues only with an upstream's `queue: { size, timeout }` and servers' `max_inflight`",
            ),
            ("option", Some("forwardfor")) => context
                .header
                .push(format!("{title}: option forwardfor: ferrogate always sends X-Forwarded-For")),
            ("option", Some("redispatch")) => context.header.push(format!(
                "{title}: option redispatch: ferrogate always retries on another server"
            )),
            ("option", Some("httplog")) => context.header.push(format!(
                "{title}: option httplog: ferrogate writes an access line per request (log.access)"
            )),
            ("option", Some("httpchk")) => {}
            ("http-request" | "http-response", _) => context.note(
                d.line,
                format!("`{}` in defaults: not translated: put it in the frontend or backend", d.text()),
            ),
            _ => context.note(
                d.line,
                format!("defaults `{}`: not translated: {}", d.text(), generic_reason(d)),
            ),
        }
    }
}

/// Why a directive any section may hold is not translated.
pub fn generic_reason(d: &Directive) -> &'static str {
    match (d.keyword(), d.word(1)) {
        ("log", _) => "ferrogate logs to stderr; every request gets an access line",
        ("option", Some("dontlognull" | "log-health-checks" | "dontlog-normal" | "log-separate-errors")) => {
            "ferrogate logs every request it receives"
        }
        ("option", Some("http-server-close" | "http-keep-alive" | "httpclose" | "forceclose" | "http-pretend-keepalive")) => {
            "ferrogate keeps connections to servers alive and pooled, and clients' as long as `idle_timeout` allows"
        }
        ("option", Some("h2-workaround-bogus-websocket-clients")) => {
            "ferrogate does not offer WebSockets over HTTP/2 (RFC 8441): clients upgrade over HTTP/1.1"
        }
        ("errorfile" | "errorfiles" | "http-error", _) => "ferrogate's error bodies are short and fixed",
        ("compression", _) => "ferrogate passes bodies through unchanged",
        ("capture", _) => "the access log has the request's method, path, status, timing and request id",
        ("stats", _) => "ferrogate's status page is /status on the admin listener",
        ("unique-id-format" | "unique-id-header", _) => "ferrogate gives every request an X-Request-Id itself",
        ("tcp-request" | "tcp-response", _) => "ferrogate has no layer-4 rules; `max_connections_per_ip` and route `deny` cover the common ones",
        ("monitor-uri", _) => "use the admin listener's /healthz and /readyz",
        _ => "ferrogate has no equivalent",
    }
}

/// Puts the translated parts in the document: listeners, certificates (ACME for the certbot
/// backend), routes, upstreams.
fn assemble(
    context: &mut Context,
    document: &mut Document,
    listeners: listeners::Listeners,
    frontends: Vec<FrontendOut>,
    backends: Backends,
) {
    let acme_backends: Vec<String> = frontends
        .iter()
        .flat_map(|f| f.acme_backends.iter().map(|(name, _)| name.clone()))
        .collect();
    let https_exists = listeners.listeners.iter().any(|l| l.name == "https");
    let http_exists = listeners.listeners.iter().any(|l| l.name == "http");
    document.listeners = listeners.listeners;
    let mut routes = Vec::new();
    let mut acme_hosts: Vec<String> = Vec::new();
    let mut wildcards: Vec<String> = Vec::new();
    let mut certificates = Vec::new();
    for f in frontends {
        certificates.extend(f.certificates);
        for route in f.routes {
            let tls = match &route.listener {
                None => https_exists,
                Some(name) => document.listeners.iter().any(|l| l.name == *name && l.tls),
            };
            if tls && !acme_backends.is_empty() {
                for host in &route.hosts {
                    if host.starts_with("*.") {
                        if !wildcards.contains(host) {
                            wildcards.push(host.clone());
                        }
                    } else if !acme_hosts.contains(host) {
                        acme_hosts.push(host.clone());
                    }
                }
            }
            routes.push(route);
        }
    }
    // Backend header rules and denies apply to every route that sends to the backend.
    let mut backends = backends;
    for route in &mut routes {
        if let Action::Upstream(name) = &route.action {
            if let Some(b) = backends.by_name.get_mut(name) {
                b.used = true;
                headers::apply_backend_rules(context, route, b, &document.listeners, https_exists);
            }
        }
    }
    for name in &backends.order {
        if let Some(b) = backends.by_name.get(name) {
            b.report_unapplied(context);
        }
    }
    if !acme_backends.is_empty() {
        if let (Some(first), false) = (
            backends.by_name.get(&acme_backends[0]),
            wildcards.is_empty(),
        ) {
            context.note(
                first.line,
                format!("no ACME certificate for {}: a wildcard name needs `challenge: dns-01` with a DNS provider (acme.dns_providers)", wildcards.join(", ")),
            );
        }
        acme(
            context,
            document,
            &acme_backends,
            &backends,
            acme_hosts,
            http_exists,
            &mut certificates,
        );
    }
    document.certificates = certificates;
    document.routes = routes;
    for name in &backends.order {
        let Some(b) = backends.by_name.remove(name) else {
            continue;
        };
        if acme_backends.contains(name) && !b.used {
            continue;
        }
        if let Some(mut upstream) = b.upstream {
            if !b.used {
                upstream
                    .comments
                    .push("no route sends to it (HAProxy had no use_backend for it)".into());
            }
            document.upstreams.push(upstream);
        }
    }
}

/// The certbot backend becomes ferrogate's own ACME: an `acme:` section and one HTTP-01
/// certificate per host name the TLS routes serve.
fn acme(
    context: &mut Context,
    document: &mut Document,
    acme_backends: &[String],
    backends: &Backends,
    hosts: Vec<String>,
    http_exists: bool,
    certificates: &mut Vec<CertOut>,
) {
    let mut lines = Vec::new();
    for name in acme_backends {
        let line = backends
            .by_name
            .get(name)
            .map_or(String::new(), |b| format!(" ({})", context.at(b.line)));
        lines.push(format!(
            "backend {name}{line} answered certbot's HTTP-01 challenges under /.well-known/acme-challenge/;"
        ));
    }
    lines.push(
        "ferrogate answers them on its http listener and issues and renews each certificate itself"
            .into(),
    );
    lines.push(
        "(Let's Encrypt; state in state_dir): no certbot, no cron, no concatenated PEM.".into(),
    );
    if !http_exists {
        if let Some(first) = backends.by_name.get(&acme_backends[0]) {
            context.note(
                first.line,
                "ACME HTTP-01 needs `listeners.http` on port 80, and no frontend binds it",
            );
        }
    }
    let first_line = backends
        .by_name
        .get(&acme_backends[0])
        .map_or(0, |b| b.line);
    if hosts.is_empty() {
        context.note(
            first_line,
            "the certbot backend is replaced by ferrogate's ACME, but no route names a host: add `{ name, domains: [...], acme: { challenge: http-01 } }` under tls.certificates",
        );
    }
    let has_acme = !hosts.is_empty();
    for (i, host) in hosts.into_iter().enumerate() {
        let comments = if i == 0 {
            vec!["issued by ACME (HTTP-01) for the host names of the https routes".into()]
        } else {
            Vec::new()
        };
        certificates.push(CertOut::Acme {
            comments,
            name: host.clone(),
            domains: vec![host],
        });
    }
    if has_acme {
        for cert in certificates.iter_mut() {
            if let CertOut::File {
                disabled, comments, ..
            } = cert
            {
                *disabled = true;
                comments.push(
                    "certbot's certificate file: ACME now issues these names (kept here as a comment)"
                        .into(),
                );
            }
        }
    }
    document.acme = Some(lines);
}
