//! Route rules, upstream TLS, client-auth modes and the country database compiled into a
//! snapshot from a loaded file, and the database handle kept across reloads.

use std::sync::Arc;

use http::{HeaderMap, Method};

use super::*;
use crate::routing::answer::EdgeAnswer;
use crate::routing::conditions::RequestFacts;
use crate::security::refuse::RuleRefusal;
use crate::test_pki::TestCa;

fn config(dir: &std::path::Path) -> Config {
    let ca = TestCa::new("clients");
    std::fs::write(dir.join("clients.pem"), ca.pem()).expect("write CA");
    let yaml = format!(
        "state_dir: {state}
listeners:
  https: {{ address: 127.0.0.1:1, client_auth: {{ ca: clients.pem, mode: optional }} }}
  extra: [ {{ name: plain, address: 127.0.0.1:2 }} ]
geoip: {{ database: {root}/tests/fixtures/geoip/countries.mmdb }}
routes:
  - {{ name: admin-prod, hosts: [a.test], path_prefix: /admin/, upstream: u,
      match: {{ headers: {{ x-env: {{ equals: prod }} }}, client_cert: required }},
      headers: {{ request: {{ set: {{ X-Env: prod }} }} }} }}
  - {{ name: admin, hosts: [a.test], path_prefix: /admin/, upstream: u, rewrite: {{ prefix: /v2/ }},
      deny_user_agents: ['(?i)curl'], countries: {{ deny: [RU] }} }}
  - {{ name: moved, hosts: [old.test], redirect: {{ to: 'https://a.test{{path}}', status: 301 }} }}
  - {{ name: ok, hosts: [ok.test], respond: {{ body: ok }}, headers: {{ response: {{ set: {{ Cache-Control: no-store }} }} }} }}
upstreams:
  u: {{ servers: [ {{ address: 127.0.0.1:3 }} ], tls: {{ verify: false, sni: u.internal }} }}
",
        state = dir.join("state").display(),
        root = env!("CARGO_MANIFEST_DIR"),
    );
    crate::config::load_str(&yaml, &dir.join("ferrogate.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rules_and_tls_are_compiled_into_the_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let live = Live::new().expect("live state");
    let snapshot = Snapshot::compile(&cfg, 1, &live, None);

    let https = snapshot.listener("https").expect("https");

    let mut headers = HeaderMap::new();
    headers.insert("x-env", "prod".parse().unwrap());
    let mut facts = RequestFacts {
        method: &Method::GET,
        headers: &headers,
        query: None,
        client_ip: Some("198.51.100.9".parse().unwrap()),
        client_cert: true,
    };
    let find = |facts: &RequestFacts<'_>| {
        https
            .router
            .find_with("a.test", "/admin/x", |t| t.matches(facts))
            .map(|rule| rule.target.clone())
    };
    let prod = find(&facts).expect("a route");
    assert_eq!(&*prod.name, "admin-prod");
    assert!(prod.request_headers.is_some() && prod.rewrite.is_none());
    facts.client_cert = false;
    let admin = find(&facts).expect("a route");
    assert_eq!(&*admin.name, "admin");
    assert_eq!(
        admin
            .rewrite
            .as_ref()
            .map(|r| r.apply("/admin/x"))
            .as_deref(),
        Some("/v2/x")
    );
    let refusals = admin.refusals.as_ref().expect("refusals");
    assert_eq!(
        refusals.check(&HeaderMap::new(), facts.client_ip),
        Err(RuleRefusal::Country)
    );
    assert_eq!(
        refusals.check(&HeaderMap::new(), Some("192.0.2.1".parse().unwrap())),
        Ok(())
    );

    let moved = https
        .router
        .find("old.test", "/x")
        .expect("moved")
        .target
        .clone();
    assert!(matches!(&moved.answer, Some(EdgeAnswer::Redirect(r)) if r.status == 301));
    assert!(
        moved.upstream.pool.members().is_empty(),
        "a stand-in with no servers"
    );
    let ok = https
        .router
        .find("ok.test", "/")
        .expect("ok")
        .target
        .clone();
    assert!(matches!(&ok.answer, Some(EdgeAnswer::Respond(_))));
    assert!(ok.response_headers.is_some());

    let upstream = &snapshot.upstreams()[0];
    let tls = upstream.tls.as_ref().expect("upstream tls");
    assert!(!tls.verifies());
    assert_eq!(tls.server_name("127.0.0.1:3"), "u.internal");
    assert_eq!(snapshot.upstreams().len(), 1, "stand-ins are no upstreams");
}

#[test]
fn the_country_database_handle_is_kept_across_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let live = Live::new().expect("live state");
    let prepared = live.prepare(&cfg).expect("prepare");
    let first = prepared.snapshot().geoip.clone().expect("a database");
    assert!(live.geoip.current().is_none(), "kept only when committed");
    live.commit(prepared);
    let kept = live.geoip.current().expect("kept");
    assert!(Arc::ptr_eq(&first, &kept));
    live.commit(live.prepare(&cfg).expect("prepare"));
    let again = live.snapshots.load().geoip.clone().expect("a database");
    assert!(
        Arc::ptr_eq(&first, &again),
        "the same handle across reloads"
    );
}
