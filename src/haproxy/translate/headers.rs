//! `http-request` and `http-response` rules: `set-header`, `add-header`, `del-header` become a
//! route's `headers` (the forwarding headers ferrogate sets itself are recognised and left to
//! it), `deny` becomes `deny_user_agents`, `deny`/`allow` lists or a refusing route, and
//! `redirect`/`return` become routes that answer without an upstream.

use super::super::acl::{self, AclTable, Alternatives, Fetch, Matching};
use super::super::parse::Directive;
use super::super::values::{placeholders, regex_escape};
use super::super::yaml::{ListenerOut, RouteOut};
use super::backend::BackendOut;
use super::Context;

/// Headers ferrogate must own (hop-by-hop): a config error in `headers`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Add,
    Remove,
}

/// One header rule.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    pub line: usize,
    /// The directive as written.
    pub text: String,
    pub response: bool,
    pub op: Op,
    pub name: String,
    /// With ferrogate's placeholders.
    pub value: String,
    /// `if { ssl_fc }` → `Some(true)`, `if !{ ssl_fc }` → `Some(false)`.
    pub tls: Option<bool>,
    /// Why ferrogate does this itself, when it does.
    pub builtin: Option<&'static str>,
}

/// `http-request deny`: refused requests.
#[derive(Debug, Clone)]
pub struct DenyRule {
    pub line: usize,
    pub text: String,
    pub status: u16,
    pub alternatives: Option<Alternatives>,
}

/// `http-request redirect location|prefix`, `http-request return`: answered at the edge.
#[derive(Debug, Clone)]
pub struct AnswerRule {
    pub line: usize,
    pub text: String,
    pub action: super::super::yaml::Action,
    pub alternatives: Option<Alternatives>,
}

/// What a `http-request`/`http-response` line is.
#[derive(Debug)]
pub enum Parsed {
    Header(HeaderRule),
    Deny(DenyRule),
    /// `redirect scheme https`: ferrogate's http listener does it.
    RedirectToHttps,
    Answer(AnswerRule),
    /// Noted as not translated.
    Other,
    /// Noted as not translatable here.
    Failed,
}

/// Defines an `acl NAME criterion …` line (notes it when it cannot be read).
pub fn define_acl(context: &mut Context, acls: &mut AclTable, d: &Directive) {
    let Some(name) = d.word(1) else {
        context.note(d.line, "`acl` without a name");
        return;
    };
    match acl::parse_test(d.rest(2)) {
        Ok(test) => acls.define(name, d.line, test),
        Err(message) => context.note(
            d.line,
            format!("acl {name}: {message}; rules using it are not translated"),
        ),
    }
}

/// Why ferrogate sets this header itself, when `value` is what it would set.
fn builtin(name: &str, value: &str) -> Option<&'static str> {
    let value = value.to_ascii_lowercase();
    let client = value.contains("{client_ip}");
    match name.to_ascii_lowercase().as_str() {
        "x-forwarded-for" if client => {
            Some("ferrogate sets X-Forwarded-For itself (appended to only from trusted_proxies)")
        }
        "x-real-ip" if client => Some("ferrogate sets X-Real-IP itself"),
        "x-client-ip" if client => Some("ferrogate sets X-Client-IP itself"),
        "x-forwarded-proto" if matches!(value.as_str(), "https" | "http" | "{scheme}") => {
            Some("ferrogate sets X-Forwarded-Proto itself from the connection")
        }
        "x-forwarded-host" if value == "{host}" => Some("ferrogate sets X-Forwarded-Host itself"),
        _ => None,
    }
}

/// The condition of a header rule: none, or `ssl_fc` / `!ssl_fc` (the listener decides).
fn tls_condition(alternatives: &Option<Alternatives>) -> Result<Option<bool>, &'static str> {
    let Some(alternatives) = alternatives else {
        return Ok(None);
    };
    match alternatives.as_slice() {
        [term] => match term.as_slice() {
            [atom] if atom.test.fetch == Fetch::SslFc => Ok(Some(!atom.negated)),
            _ => Err("header rules are translated unconditionally or with `{ ssl_fc }` only: a route's headers apply to all its requests"),
        },
        _ => Err("header rules are translated unconditionally or with `{ ssl_fc }` only: a route's headers apply to all its requests"),
    }
}

fn deny_status(words: &[String]) -> u16 {
    words
        .iter()
        .position(|w| w == "deny_status")
        .and_then(|i| words.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(403)
}

/// Reads an `http-request`/`http-response` line; notes what it cannot translate.
pub fn parse_rule(context: &mut Context, d: &Directive, acls: &AclTable) -> Parsed {
    let (action_words, condition) = match acl::split_condition(&d.words) {
        Ok(split) => split,
        Err(message) => {
            context.note(d.line, format!("`{}`: {message}", d.text()));
            return Parsed::Failed;
        }
    };
    let alternatives = match condition.map(|c| acl::resolve(&c, acls)) {
        None => None,
        Some(Ok(alternatives)) => Some(alternatives),
        Some(Err(message)) => {
            context.note(d.line, format!("`{}`: not translated: {message}", d.text()));
            return Parsed::Failed;
        }
    };
    let response = d.keyword() == "http-response";
    let action = action_words.get(1).map(String::as_str).unwrap_or_default();
    let text = d.text();
    let op = match action {
        "set-header" => Op::Set,
        "add-header" => Op::Add,
        "del-header" => Op::Remove,
        "deny" if !response => {
            return Parsed::Deny(DenyRule {
                line: d.line,
                text,
                status: deny_status(action_words),
                alternatives,
            })
        }
        "redirect" if !response => return redirect(context, d, &action_words[2..], alternatives),
        "return" if !response => return answer(context, d, &action_words[2..], alternatives),
        _ => {
            let why = match action {
                "replace-path" | "set-path" | "set-uri" | "replace-uri" => "rewrite the path with the route's `rewrite` (a prefix or a regex) or `strip_prefix`",
                "auth" => "use a route's `basic_auth`",
                "set-var" | "track-sc0" | "track-sc1" | "track-sc2" | "sc-inc-gpc0" => "ferrogate has no variables or stick counters; a route's `rate_limit` covers rate limiting",
                "replace-header" | "replace-value" => "ferrogate sets, adds or removes whole headers",
                "tarpit" | "silent-drop" | "reject" => "a refusing route answers 403",
                "allow" => "ferrogate has no rule lists to leave early",
                _ => "ferrogate has no equivalent",
            };
            context.note(d.line, format!("`{text}`: not translated: {why}"));
            return Parsed::Other;
        }
    };
    let Some(name) = action_words.get(2).cloned() else {
        context.note(d.line, format!("`{text}`: no header name"));
        return Parsed::Failed;
    };
    if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
        context.note(
            d.line,
            format!("`{text}`: not translated: {name} is a hop-by-hop header ferrogate manages"),
        );
        return Parsed::Failed;
    }
    let value = match (op, action_words.get(3)) {
        (Op::Remove, extra) => {
            if extra.is_some() {
                context.note(
                    d.line,
                    format!("`{text}`: ferrogate removes every value of {name}"),
                );
            }
            String::new()
        }
        (_, None) => {
            context.note(d.line, format!("`{text}`: no value"));
            return Parsed::Failed;
        }
        (_, Some(raw)) => match placeholders(raw) {
            Ok(value) => value,
            Err(message) => {
                context.note(d.line, format!("`{text}`: not translated: {message}"));
                return Parsed::Failed;
            }
        },
    };
    let tls = match tls_condition(&alternatives) {
        Ok(tls) => tls,
        Err(why) => {
            context.note(d.line, format!("`{text}`: not translated: {why}"));
            return Parsed::Failed;
        }
    };
    let builtin = match (response, op) {
        (false, Op::Set | Op::Add) => builtin(&name, &value),
        _ => None,
    };
    Parsed::Header(HeaderRule {
        line: d.line,
        text,
        response,
        op,
        name,
        value,
        tls,
        builtin,
    })
}

/// `redirect scheme https`, `redirect location URL`, `redirect prefix P` with `code N`.
pub fn redirect(
    context: &mut Context,
    d: &Directive,
    words: &[String],
    alternatives: Option<Alternatives>,
) -> Parsed {
    let text = d.text();
    let kind = words.first().map(String::as_str).unwrap_or_default();
    let target = words.get(1).cloned().unwrap_or_default();
    let status = words
        .iter()
        .position(|w| w == "code")
        .and_then(|i| words.get(i + 1))
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(302);
    if kind == "scheme" && target == "https" {
        let plain_only = match &alternatives {
            None => true,
            Some(alternatives) => alternatives.iter().all(|term| {
                term.iter()
                    .any(|a| a.test.fetch == Fetch::SslFc && a.negated)
            }),
        };
        if plain_only {
            return Parsed::RedirectToHttps;
        }
        context.note(d.line, format!("`{text}`: not translated: ferrogate redirects every plain request that no http-bound route takes"));
        return Parsed::Failed;
    }
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        context.note(d.line, format!("`{text}`: code {status} is not a redirect ferrogate sends (301, 302, 303, 307, 308)"));
        return Parsed::Failed;
    }
    let to = match (kind, placeholders(&target)) {
        ("location", Ok(to)) => to,
        ("prefix", Ok(prefix)) => format!("{}{{path}}", prefix.trim_end_matches('/')),
        (_, Err(message)) => {
            context.note(d.line, format!("`{text}`: not translated: {message}"));
            return Parsed::Failed;
        }
        _ => {
            context.note(d.line, format!("`{text}`: not translated: only `redirect location`, `prefix` and `scheme https`"));
            return Parsed::Failed;
        }
    };
    Parsed::Answer(AnswerRule {
        line: d.line,
        text,
        action: super::super::yaml::Action::Redirect { to, status },
        alternatives,
    })
}

/// `http-request return status N [content-type T] [string S]`.
fn answer(
    context: &mut Context,
    d: &Directive,
    words: &[String],
    alternatives: Option<Alternatives>,
) -> Parsed {
    let mut status = 200;
    let mut body = String::new();
    let mut content_type = None;
    let mut i = 0;
    while i < words.len() {
        let value = words.get(i + 1).cloned();
        match (words[i].as_str(), value) {
            ("status", Some(v)) => status = v.parse().unwrap_or(200),
            ("content-type", Some(v)) => content_type = Some(v),
            ("string", Some(v)) => body = v,
            ("hdr", _) => {
                context.note(
                    d.line,
                    format!("`{}`: its `hdr` is not translated", d.text()),
                );
                i += 1;
            }
            (other, _) => {
                context.note(
                    d.line,
                    format!(
                        "`{}`: not translated: `{other}` (only status, content-type and string)",
                        d.text()
                    ),
                );
                return Parsed::Failed;
            }
        }
        i += 2;
    }
    Parsed::Answer(AnswerRule {
        line: d.line,
        text: d.text(),
        action: super::super::yaml::Action::Respond {
            status,
            body,
            content_type,
        },
        alternatives,
    })
}

/// A deny condition a route's refusal lists can hold: user agents, or client ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyList {
    UserAgents(Vec<String>),
    Deny(Vec<String>),
    Allow(Vec<String>),
}

/// The refusal list for one alternative of a 403 `deny`, when it is one atom a list can hold.
pub fn deny_list(status: u16, term: &[acl::Atom]) -> Option<DenyList> {
    let [atom] = term else {
        return None;
    };
    if status != 403 {
        return None;
    }
    let test = &atom.test;
    match (&test.fetch, atom.negated) {
        (Fetch::Header(name), false)
            if name == "user-agent" && test.matching != Matching::Found =>
        {
            let flag = if test.case_insensitive { "(?i)" } else { "" };
            let patterns = test
                .values
                .iter()
                .map(|v| {
                    let pattern = match test.matching {
                        Matching::Exact => format!("^{}$", regex_escape(v)),
                        Matching::Prefix => format!("^{}", regex_escape(v)),
                        Matching::Suffix => format!("{}$", regex_escape(v)),
                        Matching::Regex => v.clone(),
                        _ => regex_escape(v),
                    };
                    format!("{flag}{pattern}")
                })
                .collect();
            Some(DenyList::UserAgents(patterns))
        }
        (Fetch::Src, false) => Some(DenyList::Deny(test.values.clone())),
        (Fetch::Src, true) => Some(DenyList::Allow(test.values.clone())),
        _ => None,
    }
}

/// Adds a refusal list to a route; notes when two `allow` lists would have to intersect.
pub fn add_list(context: &mut Context, line: usize, route: &mut RouteOut, list: &DenyList) {
    match list {
        DenyList::UserAgents(patterns) => {
            for p in patterns {
                if !route.deny_user_agents.contains(p) {
                    route.deny_user_agents.push(p.clone());
                }
            }
        }
        DenyList::Deny(ranges) => {
            for r in ranges {
                if !route.deny.contains(r) {
                    route.deny.push(r.clone());
                }
            }
        }
        DenyList::Allow(ranges) => {
            if !route.allow.is_empty() && route.allow != *ranges {
                context.note(line, format!("route {}: a second `deny if !{{ src … }}` would narrow `allow` to the ranges both name; not translated", route.name));
            } else {
                route.allow = ranges.clone();
            }
        }
    }
}

/// Whether the route's listener is TLS.
pub fn route_tls(route: &RouteOut, listeners: &[ListenerOut], https_exists: bool) -> bool {
    match &route.listener {
        None => https_exists,
        Some(name) => listeners.iter().any(|l| l.name == *name && l.tls),
    }
}

/// Applies header rules to a route served on a TLS (or plain) listener, in order.
pub fn apply_rules(context: &mut Context, route: &mut RouteOut, rules: &[HeaderRule], tls: bool) {
    for rule in rules {
        if rule.builtin.is_some() || rule.tls.is_some_and(|t| t != tls) {
            continue;
        }
        let ops = if rule.response {
            &mut route.response_headers
        } else {
            &mut route.request_headers
        };
        let name = rule.name.clone();
        let already = ops.set.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name))
            || ops.add.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name))
            || ops.remove.iter().any(|n| n.eq_ignore_ascii_case(&name));
        if already {
            context.note(rule.line, format!("`{}`: {name} has another rule before it; ferrogate applies remove, then set, then add, whatever their order", rule.text));
        }
        match rule.op {
            Op::Set => ops.set.push((name, rule.value.clone())),
            Op::Add => ops.add.push((name, rule.value.clone())),
            Op::Remove => ops.remove.push(name),
        }
    }
}

/// A backend's header rules and refusal lists on a route that sends to it.
pub fn apply_backend_rules(
    context: &mut Context,
    route: &mut RouteOut,
    backend: &BackendOut,
    listeners: &[ListenerOut],
    https_exists: bool,
) {
    let tls = route_tls(route, listeners, https_exists);
    apply_rules(context, route, &backend.header_rules, tls);
    for deny in &backend.denies {
        let Some(alternatives) = &deny.alternatives else {
            context.note(
                deny.line,
                format!(
                    "`{}`: not translated: it refuses every request to backend {}",
                    deny.text, backend.name
                ),
            );
            continue;
        };
        for term in alternatives {
            match deny_list(deny.status, term) {
                Some(list) => add_list(context, deny.line, route, &list),
                None => context.note(
                    deny.line,
                    format!("`{}`: not translated: in a backend only user-agent and src tests are (move it to the frontend)", deny.text),
                ),
            }
        }
    }
}
