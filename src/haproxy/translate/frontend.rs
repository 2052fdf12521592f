//! A `frontend` (or the frontend half of a `listen`) as routes, on the listeners its binds
//! became (`listeners`): `use_backend … if …` and `default_backend` become routes in
//! HAProxy's order, the certbot challenge rule is recognised (ACME replaces it), and
//! `http-request` rules are laid over the routes they apply to.

use super::super::acl::{split_condition, AclTable, Alternatives, Fetch, Matching};
use super::super::yaml::{Action, CertOut, RouteOut};
use super::headers::{self, AnswerRule, DenyRule, HeaderRule, Parsed};
use super::listeners::Listeners;
use super::spec::Spec;
use super::{generic_reason, Backends, Context, Scope, SectionKind};

/// ACME HTTP-01 challenges live under this path.
const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge";

/// A frontend's translation.
#[derive(Debug, Default)]
pub struct FrontendOut {
    pub routes: Vec<RouteOut>,
    pub certificates: Vec<CertOut>,
    /// Backends that only answered ACME challenges (name, line of the rule).
    pub acme_backends: Vec<(String, usize)>,
}

/// A base route before it is written: the spec, where it is served, what it sends to.
#[derive(Debug, Clone)]
struct Planned {
    spec: Spec,
    listener: Option<String>,
    action: Action,
    line: usize,
    origin: String,
    /// Answered by an earlier `http-request` rule for every request (later rules never run).
    answered: bool,
    /// Every host it had went to overlays: nothing is left of it.
    dead: bool,
    /// Refusal lists a `deny` with a `src` test puts on it.
    lists: Vec<headers::DenyList>,
}

/// A directive's text without the `(file:line)` its origin carries.
fn bare(origin: &str) -> &str {
    origin.rsplit_once(" (").map_or(origin, |(text, _)| text)
}

/// The listeners a spec is served on: the frontend's, filtered by `ssl_fc`; on a frontend with
/// both `http` and `https`, plain requests are redirected (ferrogate's default), so only
/// `!ssl_fc` routes go to `http`.
fn targets(
    spec_tls: Option<bool>,
    binds: &[(String, bool)],
    default_name: &str,
) -> Vec<Option<String>> {
    let both = binds.iter().any(|(n, _)| n == "http") && binds.iter().any(|(n, _)| n == "https");
    let mut out: Vec<Option<String>> = Vec::new();
    for (name, tls) in binds {
        if spec_tls.is_some_and(|t| t != *tls) {
            continue;
        }
        if both && name == "http" && spec_tls != Some(false) {
            continue;
        }
        let target = if name == default_name {
            None
        } else {
            Some(name.clone())
        };
        if !out.contains(&target) {
            out.push(target);
        }
    }
    out
}

/// Whether a use_backend rule only answers ACME challenges (certbot's backend).
fn is_acme_rule(alternatives: &Option<Alternatives>) -> bool {
    let Some(alternatives) = alternatives else {
        return false;
    };
    !alternatives.is_empty()
        && alternatives.iter().all(|term| match term.as_slice() {
            [atom] => {
                !atom.negated
                    && atom.test.fetch == Fetch::Path
                    && atom.test.matching == Matching::Prefix
                    && atom
                        .test
                        .values
                        .iter()
                        .all(|v| v.starts_with(ACME_CHALLENGE_PATH))
            }
            _ => false,
        })
}

fn path_of(spec: &Spec) -> &str {
    spec.path_prefix.as_deref().unwrap_or("/")
}

fn overlaps(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Drops what can never be reached, gives a host the route of an earlier any-host rule for a
/// narrower path (as HAProxy's first match would), and says where ferrogate's choice (host,
/// then longest prefix) still differs from HAProxy's (first rule that matches).
fn check_order(context: &mut Context, planned: &mut Vec<Planned>) {
    let mut keep: Vec<Planned> = Vec::new();
    for mut p in planned.drain(..) {
        let mut dropped = false;
        let mut shadows: Vec<Planned> = Vec::new();
        for earlier in &keep {
            if earlier.listener != p.listener || earlier.spec.has_match() || p.spec.has_match() {
                continue;
            }
            let same_path = path_of(&earlier.spec) == path_of(&p.spec);
            if same_path && earlier.spec.hosts.is_empty() && p.spec.hosts.is_empty() {
                context.note(
                    p.line,
                    format!(
                        "`{}` is never reached: `{}` takes the same requests first",
                        bare(&p.origin),
                        bare(&earlier.origin)
                    ),
                );
                dropped = true;
                break;
            }
            if same_path && !earlier.spec.hosts.is_empty() && !p.spec.hosts.is_empty() {
                let before = p.spec.hosts.len();
                p.spec.hosts.retain(|h| !earlier.spec.hosts.contains(h));
                if p.spec.hosts.len() != before && p.spec.hosts.is_empty() {
                    context.note(
                        p.line,
                        format!(
                            "`{}` is never reached: `{}` takes the same hosts first",
                            bare(&p.origin),
                            bare(&earlier.origin)
                        ),
                    );
                    dropped = true;
                    break;
                }
            }
            let host_first = earlier.spec.hosts.is_empty() && !p.spec.hosts.is_empty();
            // An any-host rule for a narrower path comes first: HAProxy sends these hosts'
            // requests under that path to it, so they get a route of their own that does too.
            if host_first
                && path_of(&earlier.spec) != path_of(&p.spec)
                && path_of(&earlier.spec).starts_with(path_of(&p.spec))
            {
                let mut spec = earlier.spec.clone();
                spec.hosts = p.spec.hosts.clone();
                shadows.push(Planned {
                    spec,
                    listener: earlier.listener.clone(),
                    action: earlier.action.clone(),
                    line: earlier.line,
                    origin: earlier.origin.clone(),
                    answered: earlier.answered,
                    dead: false,
                    lists: earlier.lists.clone(),
                });
                continue;
            }
            let longer_first = earlier.spec.hosts == p.spec.hosts
                && path_of(&p.spec).len() > path_of(&earlier.spec).len()
                && path_of(&p.spec).starts_with(path_of(&earlier.spec));
            if (host_first && overlaps(path_of(&earlier.spec), path_of(&p.spec))) || longer_first {
                context.note(
                    p.line,
                    format!("`{}` comes after `{}` in HAProxy, which sent the requests both match to the first; ferrogate prefers the more specific host, then the longer path prefix", bare(&p.origin), bare(&earlier.origin)),
                );
            }
        }
        if !dropped {
            for shadow in shadows {
                let taken = keep.iter().any(|k| {
                    k.listener == shadow.listener
                        && k.spec.hosts == shadow.spec.hosts
                        && k.spec.path_prefix == shadow.spec.path_prefix
                });
                if !taken {
                    keep.push(shadow);
                }
            }
            keep.push(p);
        }
    }
    *planned = keep;
}

/// One HAProxy condition alternative as base routes (one per target listener).
fn plan(
    context: &mut Context,
    alternatives: Option<&Alternatives>,
    action: &Action,
    line: usize,
    origin: &str,
    binds: &[(String, bool)],
    default_name: &str,
) -> Vec<Planned> {
    let specs: Vec<Spec> = match alternatives {
        None => vec![Spec::default()],
        Some(alternatives) => {
            let mut specs: Vec<Spec> = Vec::new();
            for term in alternatives {
                match Spec::from_atoms(term) {
                    Ok(spec) => match specs.iter_mut().find(|s| s.same_but_hosts(&spec)) {
                        Some(same) => {
                            for host in spec.hosts {
                                if !same.hosts.contains(&host) {
                                    same.hosts.push(host);
                                }
                            }
                        }
                        None => specs.push(spec),
                    },
                    Err(message) => context.note(
                        line,
                        format!("`{}`: a part is not translated: {message}", bare(origin)),
                    ),
                }
            }
            specs
        }
    };
    let mut out = Vec::new();
    for spec in specs {
        for why in &spec.approximations {
            context.note(line, format!("`{}`: {why}", bare(origin)));
        }
        let listeners = targets(spec.tls, binds, default_name);
        if listeners.is_empty() {
            context.note(
                line,
                format!(
                    "`{}`: no listener of this frontend serves it (ssl_fc)",
                    bare(origin)
                ),
            );
        }
        for listener in listeners {
            out.push(Planned {
                spec: spec.clone(),
                listener,
                action: action.clone(),
                line,
                origin: origin.to_string(),
                answered: false,
                dead: false,
                lists: Vec::new(),
            });
        }
    }
    out
}

/// An `http-request` rule that answers at the edge, laid over the base routes it applies to.
struct Overlay {
    line: usize,
    origin: String,
    action: Action,
    alternatives: Option<Alternatives>,
    /// A `deny` whose `src` test became an `allow`/`deny` list: the routes keep their action.
    list: Option<headers::DenyList>,
}

fn overlay(
    context: &mut Context,
    o: &Overlay,
    planned: &mut [Planned],
    overlays: &mut Vec<(usize, Planned)>,
    binds: &[(String, bool)],
    default_name: &str,
    listeners: &Listeners,
) {
    let specs: Vec<Spec> = match &o.alternatives {
        None => vec![Spec::default()],
        Some(alternatives) => alternatives
            .iter()
            .filter_map(|term| match Spec::from_atoms(term) {
                Ok(spec) => Some(spec),
                Err(message) => {
                    context.note(
                        o.line,
                        format!("`{}`: a part is not translated: {message}", bare(&o.origin)),
                    );
                    None
                }
            })
            .collect(),
    };
    for spec in specs {
        for why in &spec.approximations {
            context.note(o.line, format!("`{}`: {why}", bare(&o.origin)));
        }
        if planned.is_empty() && o.list.is_some() {
            context.note(
                o.line,
                format!("`{}` applies to no route of this frontend", bare(&o.origin)),
            );
            continue;
        }
        // A rule for named hosts: its own route takes those hosts from every any-host route
        // (ferrogate tries exact and wildcard hosts first); routes naming the same hosts get
        // their own narrowed copy below.
        let standalone = planned.is_empty() || (!spec.hosts.is_empty() && o.list.is_none());
        if standalone {
            for listener in targets(spec.tls, binds, default_name) {
                overlays.push((
                    0,
                    Planned {
                        spec: spec.clone(),
                        listener,
                        action: o.action.clone(),
                        line: o.line,
                        origin: o.origin.clone(),
                        answered: false,
                        dead: false,
                        lists: Vec::new(),
                    },
                ));
            }
            if planned.is_empty() {
                continue;
            }
        }
        // What each route takes before it: a copy for a later route that an earlier route
        // already takes whole would only collide with that route.
        let scopes: Vec<(Option<String>, Spec)> = planned
            .iter()
            .map(|p| (p.listener.clone(), p.spec.clone()))
            .collect();
        let mut applied = false;
        for (index, base) in planned.iter_mut().enumerate() {
            if base.answered || base.dead || (standalone && base.spec.hosts.is_empty()) {
                continue;
            }
            let Some(mut within) = spec.within(&base.spec) else {
                continue;
            };
            let tls = listeners.listener_tls(&base.listener);
            if within.tls.is_some_and(|t| t != tls) {
                continue;
            }
            within.tls = base.spec.tls;
            applied = true;
            let same_scope = !within.has_match()
                && path_of(&within) == path_of(&base.spec)
                && within.matching == base.spec.matching;
            if same_scope && within.hosts == base.spec.hosts {
                match &o.list {
                    Some(list) => base.lists.push(list.clone()),
                    None => {
                        base.action = o.action.clone();
                        base.answered = true;
                        // Its own route for these hosts would take the same requests.
                        overlays.retain(|(_, p)| {
                            !(p.listener == base.listener
                                && p.spec.hosts == base.spec.hosts
                                && path_of(&p.spec) == path_of(&base.spec)
                                && p.spec.matching == base.spec.matching)
                        });
                    }
                }
                base.origin = format!("{}; {}", base.origin, o.origin);
                continue;
            }
            if same_scope && !base.spec.hosts.is_empty() {
                base.spec.hosts.retain(|h| !within.hosts.contains(h));
                base.dead = base.spec.hosts.is_empty();
            }
            let duplicate = overlays.iter().any(|(_, p)| {
                p.listener == base.listener
                    && p.spec.hosts == within.hosts
                    && p.spec.path_prefix == within.path_prefix
                    && p.spec.matching == within.matching
            }) || scopes[..index].iter().any(|(listener, earlier)| {
                *listener == base.listener
                    && earlier.hosts == within.hosts
                    && earlier.path_prefix == within.path_prefix
                    && earlier.matching == within.matching
            });
            if !duplicate {
                overlays.push((
                    index,
                    Planned {
                        spec: within,
                        listener: base.listener.clone(),
                        action: match &o.list {
                            Some(_) => base.action.clone(),
                            None => o.action.clone(),
                        },
                        line: o.line,
                        origin: o.origin.clone(),
                        answered: false,
                        dead: false,
                        lists: base.lists.iter().cloned().chain(o.list.clone()).collect(),
                    },
                ));
            }
        }
        if !applied && !standalone {
            context.note(
                o.line,
                format!("`{}` applies to no route of this frontend", bare(&o.origin)),
            );
        }
    }
}

/// Translates a frontend's rules into routes.
pub fn translate(
    context: &mut Context,
    scope: &Scope<'_>,
    listeners: &mut Listeners,
    backends: &mut Backends,
) -> FrontendOut {
    let mut out = FrontendOut::default();
    let binds_entry = listeners
        .binds
        .remove(&scope.section.line)
        .unwrap_or_default();
    out.certificates = binds_entry.certificates;
    let binds = binds_entry.listeners;
    let listen = scope.section.kind == SectionKind::Listen;
    let default_name = listeners.default_name();
    let mut acls = AclTable::default();
    let mut header_rules: Vec<HeaderRule> = Vec::new();
    let mut denies: Vec<DenyRule> = Vec::new();
    let mut answers: Vec<AnswerRule> = Vec::new();
    let mut use_rules: Vec<(usize, String, Option<Alternatives>, String)> = Vec::new();
    let mut default_backend: Option<(usize, String, String)> = None;
    let mut redirect_line: Option<String> = None;
    let mut listener_comments: Vec<String> = Vec::new();
    for d in &scope.section.directives {
        match (d.keyword(), d.word(1)) {
            ("bind", _) | ("mode" | "maxconn", _) | ("timeout", Some("http-request" | "http-keep-alive")) => {}
            ("acl", _) => headers::define_acl(context, &mut acls, d),
            ("use_backend", Some(backend)) => match split_condition(&d.words) {
                Ok((_, condition)) => {
                    let alternatives = match condition.map(|c| super::super::acl::resolve(&c, &acls)) {
                        None => None,
                        Some(Ok(a)) => Some(a),
                        Some(Err(message)) => {
                            context.note(d.line, format!("`{}`: not translated: {message}", d.text()));
                            continue;
                        }
                    };
                    use_rules.push((d.line, backend.to_string(), alternatives, context.origin(d)));
                }
                Err(message) => context.note(d.line, format!("`{}`: {message}", d.text())),
            },
            ("default_backend", Some(backend)) => default_backend = Some((d.line, backend.to_string(), context.origin(d))),
            ("http-request" | "http-response", _) => match headers::parse_rule(context, d, &acls) {
                Parsed::Header(rule) => {
                    if let Some(why) = rule.builtin {
                        listener_comments.push(format!("{}: {why}", context.origin(d)));
                    }
                    header_rules.push(rule);
                }
                Parsed::Deny(rule) => denies.push(rule),
                Parsed::Answer(rule) => answers.push(rule),
                Parsed::RedirectToHttps => redirect_line = Some(context.origin(d)),
                Parsed::Other | Parsed::Failed => {}
            },
            ("redirect", _) => match split_condition(&d.words) {
                Ok((words, condition)) => {
                    let alternatives = match condition.map(|c| super::super::acl::resolve(&c, &acls)) {
                        None => None,
                        Some(Ok(a)) => Some(a),
                        Some(Err(message)) => {
                            context.note(d.line, format!("`{}`: not translated: {message}", d.text()));
                            continue;
                        }
                    };
                    match headers::redirect(context, d, &words[1..], alternatives) {
                        Parsed::RedirectToHttps => redirect_line = Some(context.origin(d)),
                        Parsed::Answer(rule) => answers.push(rule),
                        _ => {}
                    }
                }
                Err(message) => context.note(d.line, format!("`{}`: {message}", d.text())),
            },
            ("option", Some("forwardfor")) => listener_comments.push(format!("{}: ferrogate always sends X-Forwarded-For", context.origin(d))),
            ("timeout", Some("client")) => context.note(d.line, "`timeout client`: not translated: ferrogate bounds a request head with `header_timeout` and an idle connection with `idle_timeout`"),
            // The backend half of a listen section.
            ("server" | "balance" | "cookie" | "default-server" | "stick" | "stick-table" | "retries" | "http-check", _) if listen => {}
            ("option", Some("httpchk" | "redispatch")) | ("timeout", Some("connect" | "server" | "tunnel" | "check" | "queue")) if listen => {}
            _ => context.note(d.line, format!("`{}`: not translated: {}", d.text(), generic_reason(d))),
        }
    }
    if listen
        && default_backend.is_none()
        && backends
            .by_name
            .get(scope.name())
            .is_some_and(|b| b.upstream.is_some())
    {
        default_backend = Some((
            scope.section.line,
            scope.name().to_string(),
            format!("its own servers ({})", context.at(scope.section.line)),
        ));
    }

    // Base routes: use_backend rules in order, then default_backend.
    let mut planned: Vec<Planned> = Vec::new();
    let mut rules: Vec<(usize, String, Option<Alternatives>, String)> = use_rules;
    if let Some((line, backend, origin)) = default_backend {
        rules.push((line, backend, None, origin));
    }
    for (line, backend, alternatives, origin) in rules {
        if is_acme_rule(&alternatives) {
            out.acme_backends.push((backend.clone(), line));
            if let Some(p) = binds
                .iter()
                .find(|(n, _)| n == "http")
                .map(|(n, _)| n.clone())
            {
                if let Some(l) = listeners.listeners.iter_mut().find(|l| l.name == p) {
                    l.comments.push(format!(
                        "{origin}: ferrogate answers ACME HTTP-01 challenges here itself"
                    ));
                }
            }
            continue;
        }
        match backends.by_name.get(&backend) {
            None => {
                context.note(
                    line,
                    format!(
                        "`{}`: no backend named {backend} was translated; not translated",
                        bare(&origin)
                    ),
                );
                continue;
            }
            Some(b) if b.upstream.is_none() => {
                context.note(
                    line,
                    format!(
                        "`{}`: backend {backend} has no usable server; not translated",
                        bare(&origin)
                    ),
                );
                continue;
            }
            Some(_) => {}
        }
        let action = Action::Upstream(backend.clone());
        planned.extend(plan(
            context,
            alternatives.as_ref(),
            &action,
            line,
            &origin,
            &binds,
            default_name,
        ));
    }
    check_order(context, &mut planned);

    // http-request rules that answer at the edge run before use_backend: laid over the routes.
    let mut lists: Vec<(usize, headers::DenyList)> = Vec::new();
    let mut overlays_in_order: Vec<Overlay> = Vec::new();
    for deny in denies {
        let status = deny.status;
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason());
        let body = format!("{}\n", reason.unwrap_or("Refused"));
        let action = Action::Respond {
            status,
            body,
            content_type: None,
        };
        let origin = format!("{} ({})", deny.text, context.at(deny.line));
        match &deny.alternatives {
            None => overlays_in_order.push(Overlay {
                line: deny.line,
                origin: origin.clone(),
                action,
                alternatives: None,
                list: None,
            }),
            Some(alternatives) => {
                let mut rest: Alternatives = Vec::new();
                for term in alternatives {
                    if let Some(list) = headers::deny_list(status, term) {
                        lists.push((deny.line, list));
                        continue;
                    }
                    // `deny if !{ src R } <more>`: within <more>, only R may pass.
                    let src: Vec<usize> = (0..term.len())
                        .filter(|i| term[*i].test.fetch == Fetch::Src)
                        .collect();
                    if let ([at], 403, true) = (src.as_slice(), status, term.len() > 1) {
                        let atom = &term[*at];
                        let list = if atom.negated {
                            headers::DenyList::Allow(atom.test.values.clone())
                        } else {
                            headers::DenyList::Deny(atom.test.values.clone())
                        };
                        let others: Vec<_> = term
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| i != at)
                            .map(|(_, a)| a.clone())
                            .collect();
                        overlays_in_order.push(Overlay {
                            line: deny.line,
                            origin: origin.clone(),
                            action: action.clone(),
                            alternatives: Some(vec![others]),
                            list: Some(list),
                        });
                        continue;
                    }
                    rest.push(term.clone());
                }
                if !rest.is_empty() {
                    overlays_in_order.push(Overlay {
                        line: deny.line,
                        origin: origin.clone(),
                        action,
                        alternatives: Some(rest),
                        list: None,
                    });
                }
            }
        }
    }
    for answer in answers {
        let origin = format!("{} ({})", answer.text, context.at(answer.line));
        overlays_in_order.push(Overlay {
            line: answer.line,
            origin,
            action: answer.action,
            alternatives: answer.alternatives,
            list: None,
        });
    }
    overlays_in_order.sort_by_key(|o| o.line);
    let mut overlays: Vec<(usize, Planned)> = Vec::new();
    for o in &overlays_in_order {
        overlay(
            context,
            o,
            &mut planned,
            &mut overlays,
            &binds,
            default_name,
            listeners,
        );
    }

    // Routes in order: each base route preceded by the overlays on it.
    let frontend_name = scope.name().to_string();
    let mut ordered: Vec<Planned> = Vec::new();
    for (index, base) in planned.into_iter().enumerate() {
        ordered.extend(
            overlays
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|(_, p)| p.clone()),
        );
        if !base.dead {
            ordered.push(base);
        }
    }
    if ordered.is_empty() {
        ordered.extend(overlays.into_iter().map(|(_, p)| p));
    }
    for p in ordered {
        let base_name = match &p.action {
            Action::Upstream(backend) if backend == &frontend_name => frontend_name.clone(),
            Action::Upstream(backend) => format!("{frontend_name}-{backend}"),
            Action::Redirect { .. } => format!("{frontend_name}-redirect"),
            Action::Respond { .. } if p.origin.starts_with("http-request deny") => {
                format!("{frontend_name}-deny")
            }
            Action::Respond { .. } => format!("{frontend_name}-return"),
        };
        let name = listeners.unique_route_name(&base_name);
        let mut comments = vec![format!("{}: {}", scope.title(context), p.origin)];
        comments.extend(
            p.spec
                .approximations
                .iter()
                .map(|a| format!("approximately: {a}")),
        );
        let mut route = RouteOut {
            comments,
            name,
            hosts: p.spec.hosts.clone(),
            path_prefix: p.spec.path_prefix.clone(),
            listener: p.listener.clone(),
            matching: p.spec.matching.clone(),
            action: p.action.clone(),
            allow: Vec::new(),
            deny: Vec::new(),
            deny_user_agents: Vec::new(),
            request_headers: Default::default(),
            response_headers: Default::default(),
        };
        for (line, list) in &lists {
            headers::add_list(context, *line, &mut route, list);
        }
        for list in &p.lists {
            headers::add_list(context, p.line, &mut route, list);
        }
        if matches!(route.action, Action::Upstream(_)) {
            let tls = listeners.listener_tls(&route.listener);
            headers::apply_rules(context, &mut route, &header_rules, tls);
        }
        out.routes.push(route);
    }
    if out.routes.is_empty() {
        for (line, _) in &lists {
            context.note(*line, "applies to no route of this frontend");
        }
    }

    // The plain listener: ferrogate redirects to https by default.
    let http_here = binds.iter().any(|(n, _)| n == "http");
    let https_exists = listeners.https_exists();
    if http_here {
        if let Some(l) = listeners.listeners.iter_mut().find(|l| l.name == "http") {
            if let (Some(origin), true) = (&redirect_line, https_exists) {
                l.comments.push(format!("{origin}: ferrogate's http listener does this by default (308 Permanent Redirect)"));
            }
            l.comments.extend(listener_comments.iter().cloned());
        }
        let both = binds.iter().any(|(n, _)| n == "https");
        if both && redirect_line.is_none() {
            if let Some(line) = binds_entry.plain_line {
                context.note(line, "HAProxy serves this frontend's routes over plain http too; ferrogate's http listener redirects them to https (308): bind a route with `listener: http` to serve it plain");
            }
        }
    } else if let Some(l) = binds
        .first()
        .and_then(|(n, _)| listeners.listeners.iter_mut().find(|l| l.name == *n))
    {
        l.comments.extend(listener_comments.iter().cloned());
    }
    if let Some(origin) = &redirect_line {
        if !https_exists {
            context.note(
                scope.section.line,
                format!(
                    "`{}`: there is no TLS bind to redirect to; not translated",
                    bare(origin)
                ),
            );
        }
    }
    out
}
