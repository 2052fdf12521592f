//! Tests of a route's request rules: the action (`upstream`, `redirect`, `respond`), `match`,
//! `deny_user_agents`, `countries`, `rewrite` and `headers`, valid and invalid forms.

use super::tests::{errors, ok, one_error, MINIMAL};
use crate::config::model::{Condition, Countries, CountryCode, Rewrite, RouteAction, TemplatePart};

/// MINIMAL with its one route given `extra` keys.
fn route_with(extra: &str) -> String {
    MINIMAL.replace(
        "  - { name: app, upstream: app }\n",
        &format!("  - {{ name: app, upstream: app, {extra} }}\n"),
    )
}

/// MINIMAL with its `routes` replaced.
fn with_routes(routes: &str) -> String {
    MINIMAL.replace("  - { name: app, upstream: app }\n", routes)
}

/// The fixture country database, for `geoip`.
fn geoip_section() -> String {
    format!(
        "geoip: {{ database: {}/tests/fixtures/geoip/countries.mmdb }}\n",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn a_match_parses_every_condition() {
    let config = ok(&route_with(
        "match: { methods: [get, POST], headers: { X-Env: { equals: prod }, x-debug: present, x-legacy: absent, user-agent: { regex: '^Mozilla/' } }, query: { debug: { prefix: '1' } }, client: [10.0.0.0/8] }",
    ));
    let matcher = config.routes[0].rules.matcher.clone().unwrap();
    assert_eq!(matcher.methods, [http::Method::GET, http::Method::POST]);
    let names: Vec<&str> = matcher.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-env", "x-debug", "x-legacy", "user-agent"]);
    assert_eq!(matcher.headers[0].1, Condition::Equals("prod".into()));
    assert_eq!(matcher.headers[1].1, Condition::Present);
    assert_eq!(matcher.headers[2].1, Condition::Absent);
    assert!(matches!(&matcher.headers[3].1, Condition::Regex(p) if p.as_str() == "^Mozilla/"));
    assert_eq!(
        matcher.query,
        [("debug".to_string(), Condition::Prefix("1".into()))]
    );
    assert_eq!(matcher.client.len(), 1);
    assert!(!matcher.client_cert);
}

#[test]
fn match_errors_point_at_their_condition() {
    one_error(
        &route_with("match: { headers: { user-agent: { regex: '(unclosed' } } }"),
        4,
        "routes[0].match.headers.user-agent.regex",
        "invalid regex",
    );
    one_error(
        &route_with("match: { query: { debug: maybe } }"),
        4,
        "routes[0].match.query.debug",
        "unknown condition",
    );
    one_error(
        &route_with("match: { headers: { x: { equals: a, prefix: b } } }"),
        4,
        "routes[0].match.headers.x",
        "exactly one key",
    );
    one_error(
        &route_with("match: { headers: { x: { like: a } } }"),
        4,
        "routes[0].match.headers.x.like",
        "unknown key `like`",
    );
    one_error(
        &route_with("match: { methods: ['GE T'] }"),
        4,
        "routes[0].match.methods[0]",
        "not an HTTP method",
    );
    one_error(
        &route_with("match: {}"),
        4,
        "routes[0].match",
        "names no condition",
    );
    one_error(
        &route_with("match: { client_cert: yes }"),
        4,
        "routes[0].match.client_cert",
        "expected `required`",
    );
    one_error(
        &route_with("match: { client_cert: required }"),
        4,
        "routes[0].match.client_cert",
        "needs `client_auth` on the route's listener `https`",
    );
    one_error(
        &route_with("match: { headers: { 'bad name': present } }"),
        4,
        "routes[0].match.headers.bad name",
        "not a valid header name",
    );
}

#[test]
fn a_route_has_exactly_one_of_upstream_redirect_and_respond() {
    let found = errors(&with_routes("  - { name: a }\n"));
    assert_eq!(found.len(), 1, "{found}");
    assert_eq!(found.0[0].key, "routes[0]");
    assert!(
        found.0[0]
            .message
            .contains("exactly one of `upstream`, `redirect` or `respond`"),
        "{found}"
    );
    one_error(
        &route_with("redirect: { to: / }"),
        4,
        "routes[0].redirect",
        "`redirect` and `upstream` both given",
    );
    let found = errors(&with_routes(
        "  - { name: a, respond: {}, redirect: { to: / } }\n",
    ));
    assert_eq!(found.len(), 1, "{found}");
    assert_eq!(found.0[0].key, "routes[0].respond");
    // A misspelt one is one mistake: the unknown key.
    one_error(
        &with_routes("  - { name: a, redirct: { to: / } }\n"),
        4,
        "routes[0].redirct",
        "unknown key",
    );
}

#[test]
fn redirects_and_responses_parse_with_defaults() {
    let config = ok(&with_routes(
        "  - { name: a, hosts: [a.test], redirect: { to: 'https://{host}{path}' } }\n  - { name: b, hosts: [b.test], redirect: { to: /new, status: 308 } }\n  - { name: c, hosts: [c.test], respond: { body: \"ok\\n\" } }\n  - { name: d, hosts: [d.test], respond: { status: 204 } }\n",
    ));
    let RouteAction::Redirect(a) = &config.routes[0].action else {
        panic!("a redirect");
    };
    assert_eq!(a.status, 302);
    assert_eq!(
        a.to.parts,
        [
            TemplatePart::Literal("https://".into()),
            TemplatePart::Host,
            TemplatePart::Path
        ]
    );
    assert!(matches!(&config.routes[1].action, RouteAction::Redirect(r) if r.status == 308));
    let RouteAction::Respond(c) = &config.routes[2].action else {
        panic!("a response");
    };
    assert_eq!((c.status, c.body.as_str()), (200, "ok\n"));
    assert_eq!(c.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    let RouteAction::Respond(d) = &config.routes[3].action else {
        panic!("a response");
    };
    assert_eq!((d.status, d.content_type.as_deref()), (204, None));
    assert_eq!(config.routes[2].upstream(), None);
}

#[test]
fn redirect_and_respond_errors() {
    let route = |action: &str| with_routes(&format!("  - {{ name: a, {action} }}\n"));
    one_error(
        &route("redirect: { to: 'https://{hots}/' }"),
        4,
        "routes[0].redirect.to",
        "unknown placeholder `{hots}`",
    );
    one_error(
        &route("redirect: { to: 'example.com' }"),
        4,
        "routes[0].redirect.to",
        "starts with",
    );
    one_error(
        &route("redirect: { to: /, status: 200 }"),
        4,
        "routes[0].redirect.status",
        "301, 302, 303, 307 or 308",
    );
    one_error(
        &route("respond: { status: 204, body: x }"),
        4,
        "routes[0].respond.body",
        "no body",
    );
    one_error(
        &route("respond: { status: 99 }"),
        4,
        "routes[0].respond.status",
        "between 200 and 599",
    );
    one_error(
        &route("respond: { body: x }, rewrite: { prefix: / }"),
        4,
        "routes[0].rewrite",
        "answers itself",
    );
    one_error(
        &route("redirect: { to: / }, headers: { request: { set: { x: y } } }"),
        4,
        "routes[0].headers.request",
        "answers itself",
    );
    // Response headers on a fixed response are fine.
    ok(&route(
        "respond: { body: x }, headers: { response: { set: { cache-control: no-store } } }",
    ));
}

#[test]
fn rewrites_parse_and_exclude_strip_prefix() {
    let config = ok(&route_with("path_prefix: /api/, rewrite: { prefix: /v2/ }"));
    assert_eq!(
        config.routes[0].rules.rewrite,
        Some(Rewrite::Prefix("/v2/".into()))
    );
    let config = ok(&route_with(
        "rewrite: { regex: '^/old/(.*)$', to: '/new/$1' }",
    ));
    assert!(matches!(
        config.routes[0].rules.rewrite,
        Some(Rewrite::Regex { .. })
    ));
    let config = ok(&route_with("path_prefix: /owui/, strip_prefix: true"));
    assert_eq!(
        config.routes[0].rules.rewrite,
        Some(Rewrite::Prefix("/".into()))
    );

    one_error(
        &route_with("path_prefix: /owui/, strip_prefix: true, rewrite: { prefix: / }"),
        4,
        "routes[0].rewrite",
        "use one of them",
    );
    one_error(
        &route_with("rewrite: { regex: '^/old/(.*', to: /x }"),
        4,
        "routes[0].rewrite.regex",
        "invalid regex",
    );
    one_error(
        &route_with("rewrite: { prefix: v2 }"),
        4,
        "routes[0].rewrite.prefix",
        "must start with `/`",
    );
    one_error(
        &route_with("rewrite: { regex: x }"),
        4,
        "routes[0].rewrite.regex",
        "needs `to`",
    );
    one_error(
        &route_with("rewrite: { regex: '^/(a)$', to: '/$1b' }"),
        4,
        "routes[0].rewrite.to",
        "`$1b` names no group",
    );
    one_error(
        &route_with("rewrite: { prefix: /, regex: x, to: / }"),
        4,
        "routes[0].rewrite",
        "either `prefix`",
    );
}

#[test]
fn header_rules_parse_and_refuse_hop_by_hop_names() {
    let config = ok(&route_with(
        "headers: { request: { set: { X-Env: prod }, add: { X-Trace: '{request_id}', X-Num: 5 }, remove: [X-Internal] }, response: { set: { Cache-Control: no-store }, remove: [X-Powered-By] } }",
    ));
    let rules = &config.routes[0].rules;
    assert_eq!(rules.request_headers.remove[0].as_str(), "x-internal");
    assert_eq!(rules.request_headers.set[0].0.as_str(), "x-env");
    assert_eq!(
        rules.request_headers.add[0].1.parts,
        [TemplatePart::RequestId]
    );
    assert_eq!(rules.request_headers.add[1].1.literal(), Some("5"));
    assert_eq!(rules.response_headers.set[0].0.as_str(), "cache-control");

    for name in [
        "Connection",
        "transfer-encoding",
        "Content-Length",
        "Upgrade",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Proxy-Connection",
    ] {
        one_error(
            &route_with(&format!(
                "headers: {{ request: {{ set: {{ {name}: x }} }} }}"
            )),
            4,
            &format!("routes[0].headers.request.set.{name}"),
            "hop-by-hop",
        );
    }
    one_error(
        &route_with("headers: { response: { remove: [Connection] } }"),
        4,
        "routes[0].headers.response.remove[0]",
        "hop-by-hop",
    );
    one_error(
        &route_with("headers: { response: { add: { Keep-Alive: x } } }"),
        4,
        "routes[0].headers.response.add.Keep-Alive",
        "hop-by-hop",
    );
    one_error(
        &route_with("headers: { request: { set: { X-Who: '{user}' } } }"),
        4,
        "routes[0].headers.request.set.X-Who",
        "unknown placeholder `{user}`",
    );
    one_error(
        &route_with("headers: { request: { set: { 'X Bad': x } } }"),
        4,
        "routes[0].headers.request.set.X Bad",
        "not a valid header name",
    );
}

#[test]
fn user_agent_regexes_are_checked_one_by_one() {
    let config = ok(&route_with(
        "deny_user_agents: ['(?i)curl', python-requests]",
    ));
    assert_eq!(config.routes[0].rules.deny_user_agents.len(), 2);
    one_error(
        &route_with("deny_user_agents: [ok, '[z-a]']"),
        4,
        "routes[0].deny_user_agents[1]",
        "invalid regex",
    );
    one_error(
        &route_with("deny_user_agents: []"),
        4,
        "routes[0].deny_user_agents",
        "empty list",
    );
}

#[test]
fn countries_need_geoip_and_iso_codes() {
    one_error(
        &route_with("countries: { deny: [RU, KP] }"),
        4,
        "routes[0].countries",
        "add `geoip: { database: FILE }`",
    );
    let with_geoip = |countries: &str| route_with(countries) + &geoip_section();
    let config = ok(&with_geoip("countries: { allow: [de, FR] }"));
    assert_eq!(
        config.routes[0].rules.countries,
        Some(Countries::Allow(vec![
            CountryCode::parse("DE").unwrap(),
            CountryCode::parse("FR").unwrap()
        ]))
    );
    let geoip = config.geoip.expect("the database is read");
    assert!(geoip.database.ends_with("countries.mmdb"));
    one_error(
        &with_geoip("countries: { deny: [RU, XX] }"),
        4,
        "routes[0].countries.deny[1]",
        "not an ISO 3166-1 alpha-2",
    );
    one_error(
        &with_geoip("countries: { deny: [RU], allow: [DE] }"),
        4,
        "routes[0].countries",
        "exactly one of `allow` and `deny`",
    );
    // Without a route using it, the database is not read.
    let unused = MINIMAL.to_string() + "geoip: { database: /nonexistent/x.mmdb }\n";
    assert!(ok(&unused).geoip.is_none());
    let missing =
        route_with("countries: { deny: [RU] }") + "geoip: { database: /nonexistent/x.mmdb }\n";
    one_error(
        &missing,
        8,
        "geoip.database",
        "cannot read /nonexistent/x.mmdb",
    );
}

#[test]
fn routes_may_share_host_and_prefix_when_they_differ_by_match() {
    let config = ok(&with_routes(
        "  - { name: prod, hosts: [a.test], match: { headers: { x-env: { equals: prod } } }, upstream: app }\n  - { name: rest, hosts: [a.test], upstream: app }\n",
    ));
    assert_eq!(config.routes.len(), 2);
    one_error(
        &with_routes("  - { name: a, hosts: [a.test], upstream: app }\n  - { name: b, hosts: [a.test], upstream: app }\n"),
        5,
        "routes[1]",
        "as route `a`",
    );
    one_error(
        &with_routes("  - { name: a, hosts: [a.test], upstream: app }\n  - { name: b, hosts: [a.test], match: { methods: [GET] }, upstream: app }\n"),
        5,
        "routes[1]",
        "never used",
    );
}
