//! The importer on whole files: each construct's translation and notes.

use serde_yaml::Value;

use super::*;

/// The translation of a whole file.
fn run(text: &str) -> Import {
    import_text(text, "haproxy.cfg", "haproxy.cfg").unwrap_or_else(|e| panic!("{e}"))
}

/// The 1-based line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the file"))
}

/// The YAML as data (it must parse).
fn yaml(import: &Import) -> Value {
    serde_yaml::from_str(&import.yaml).unwrap_or_else(|e| panic!("{e}\n{}", import.yaml))
}

/// The notes of one line, joined.
fn notes_at(import: &Import, line: usize) -> String {
    import
        .notes
        .iter()
        .filter(|n| n.line == line)
        .map(|n| n.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn routes(value: &Value) -> Vec<Value> {
    value["routes"].as_sequence().cloned().unwrap_or_default()
}

fn route<'a>(routes: &'a [Value], name: &str) -> &'a Value {
    routes
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {routes:?}"))
}

fn s(text: &str) -> Value {
    Value::from(text)
}

const HEAD: &str = "defaults\n  mode http\n";

#[test]
fn the_certbot_backend_becomes_acme_and_hosts_get_certificates() {
    let text = format!(
        "{HEAD}frontend web\n  bind :80\n  bind :443 ssl crt /etc/haproxy/certs/\n  acl le path_beg /.well-known/acme-challenge/\n  use_backend certbot if le\n  acl chat hdr(host) -i Chat.Example.com\n  use_backend owui if chat\nbackend certbot\n  server le 127.0.0.1:8688\nbackend owui\n  server a 10.0.0.11:3000\n"
    );
    let out = run(&text);
    let v = yaml(&out);
    assert_eq!(v["listeners"]["http"], s("0.0.0.0:80"));
    assert_eq!(v["listeners"]["https"], s("0.0.0.0:443"));
    assert_eq!(v["acme"]["directory"], s("letsencrypt"));
    let cert = &v["tls"]["certificates"][0];
    assert_eq!(cert["domains"][0], s("chat.example.com"));
    assert_eq!(cert["acme"]["challenge"], s("http-01"));
    assert!(
        v["upstreams"]["certbot"].is_null(),
        "certbot is not an upstream"
    );
    let r = routes(&v);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["hosts"][0], s("chat.example.com"));
    assert_eq!(r[0]["upstream"], s("owui"));
    let certbot = line_of(&text, "server le 127.0.0.1") - 1;
    let comment = format!("# backend certbot (haproxy.cfg:{certbot}) answered certbot's HTTP-01");
    assert!(out.yaml.contains(&comment), "{}", out.yaml);
    assert!(notes_at(
        &out,
        line_of(&text, "bind :443 ssl crt /etc/haproxy/certs/")
    )
    .contains("names a directory"));
    assert!(notes_at(&out, line_of(&text, "bind :80")).contains("redirects them to https"));
}

#[test]
fn binds_become_listeners() {
    let text = format!(
        "global\n  crt-base /etc/haproxy/certs\n{HEAD}frontend web\n  bind *:80\n  bind :::443 ssl crt site.pem crt /abs/api.pem ca-file /etc/ca.pem verify required alpn h2,http/1.1\n  bind :8080 accept-proxy\n  bind /run/x.sock\n  maxconn 500\n  timeout http-request 5s\n  timeout http-keep-alive 15000\n  http-request redirect scheme https unless {{ ssl_fc }}\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    );
    let out = run(&text);
    let v = yaml(&out);
    let https = &v["listeners"]["https"];
    assert_eq!(https["address"], s("[::]:443"));
    assert_eq!(https["max_connections"], Value::from(500));
    assert_eq!(https["header_timeout"], s("5s"));
    assert_eq!(https["idle_timeout"], s("15s"));
    assert_eq!(https["client_auth"]["ca"], s("/etc/ca.pem"));
    assert_eq!(https["client_auth"]["mode"], s("required"));
    let extra = &v["listeners"]["extra"][0];
    assert_eq!(extra["name"], s("web"));
    assert_eq!(extra["address"], s("0.0.0.0:8080"));
    assert_eq!(extra["proxy_protocol"], Value::from(true));
    assert!(notes_at(&out, line_of(&text, "accept-proxy")).contains("narrow it"));
    assert!(notes_at(&out, line_of(&text, "/run/x.sock")).contains("UNIX socket"));
    let certs = v["tls"]["certificates"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    assert_eq!(certs[0]["cert"], s("/etc/haproxy/certs/site.pem"));
    assert_eq!(certs[0]["key"], s("/etc/haproxy/certs/site.pem"));
    assert_eq!(certs[1]["name"], s("api"));
    // The redirect is ferrogate's default: a comment, no note.
    assert!(out
        .yaml
        .contains("ferrogate's http listener does this by default"));
    assert!(
        notes_at(&out, line_of(&text, "redirect scheme https")).is_empty(),
        "{}",
        notes_at(&out, line_of(&text, "redirect scheme https"))
    );
    // The default backend serves https and the extra listener, not plain http.
    let r = routes(&v);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0]["listener"].is_null());
    assert_eq!(r[1]["listener"], s("web"));
}

#[test]
fn acls_become_hosts_prefixes_and_match_conditions() {
    let text = format!(
        "{HEAD}frontend web\n  bind :443 ssl crt /x.pem\n  acl chat hdr(host) -i a.test b.test\n  acl api hdr_beg(host) api.\n  acl apps hdr_end(host) -i .apps.test\n  acl v1 path_beg /v1/\n  acl ping path /ping\n  acl internal src 10.0.0.0/8\n  acl writes method POST put\n  acl prod hdr(X-Env) prod\n  acl dbg req.hdr(x-debug) -m found\n  acl q url_param(debug) 1\n  use_backend api if api v1 || chat v1 prod\n  use_backend chat if chat !dbg || apps\n  use_backend admin if internal writes q\n  use_backend chat if ping\n  default_backend chat\nbackend api\n  server a 10.0.0.1:80\nbackend chat\n  server c 10.0.0.2:80\nbackend admin\n  server d 10.0.0.3:80\n"
    );
    let out = run(&text);
    let v = yaml(&out);
    let r = routes(&v);
    let api = route(&r, "web-api");
    assert_eq!(api["path_prefix"], s("/v1/"));
    assert_eq!(api["match"]["headers"]["host"]["prefix"], s("api."));
    let api2 = route(&r, "web-api-2");
    assert_eq!(
        api2["hosts"],
        serde_yaml::to_value(["a.test", "b.test"]).expect("hosts")
    );
    assert_eq!(api2["match"]["headers"]["x-env"]["equals"], s("prod"));
    let chat = route(&r, "web-chat");
    assert_eq!(chat["match"]["headers"]["x-debug"], s("absent"));
    let apps = route(&r, "web-chat-2");
    assert_eq!(apps["hosts"][0], s("*.apps.test"));
    assert!(apps["match"].is_null());
    let admin = route(&r, "web-admin");
    assert_eq!(
        admin["match"]["methods"],
        serde_yaml::to_value(["POST", "PUT"]).expect("methods")
    );
    assert_eq!(admin["match"]["client"][0], s("10.0.0.0/8"));
    assert_eq!(admin["match"]["query"]["debug"]["equals"], s("1"));
    let ping = route(&r, "web-chat-3");
    assert_eq!(ping["path_prefix"], s("/ping"));
    assert!(notes_at(&out, line_of(&text, "use_backend chat if ping"))
        .contains("matches that path alone"));
    assert!(
        notes_at(&out, line_of(&text, "use_backend chat if chat !dbg"))
            .contains("any number of labels deep")
    );
    assert!(
        route(&r, "web-chat-4")["path_prefix"].is_null(),
        "the default route"
    );
}

#[test]
fn what_a_route_cannot_say_is_noted_and_left_out() {
    let text = format!(
        "{HEAD}frontend web\n  bind :80\n  acl internal src 10.0.0.0/8\n  acl old path_reg ^/old\n  acl weird base_beg x\n  use_backend app if !internal\n  use_backend app if old\n  use_backend app if nope\n  use_backend missing if internal\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    );
    let out = run(&text);
    assert!(
        notes_at(&out, line_of(&text, "use_backend app if !internal")).contains("!src 10.0.0.0/8"),
        "{:?}",
        out.notes
    );
    assert!(notes_at(&out, line_of(&text, "use_backend app if old")).contains("path_reg"));
    assert!(notes_at(&out, line_of(&text, "acl weird")).contains("base_beg"));
    assert!(notes_at(&out, line_of(&text, "if nope")).contains("no ACL named `nope`"));
    assert!(
        notes_at(&out, line_of(&text, "use_backend missing")).contains("no backend named missing")
    );
    assert_eq!(routes(&yaml(&out)).len(), 1);
}

#[test]
fn ssl_fc_picks_the_listener() {
    let text = format!(
        "{HEAD}frontend web\n  bind :80\n  bind :443 ssl crt /x.pem\n  acl tls ssl_fc\n  use_backend plain if {{ path_beg /health }} !tls\n  use_backend secure if tls\n  default_backend secure\nbackend plain\n  server a 10.0.0.1:80\nbackend secure\n  server b 10.0.0.2:80\n"
    );
    let out = run(&text);
    let r = routes(&yaml(&out));
    let plain = route(&r, "web-plain");
    assert_eq!(plain["listener"], s("http"));
    assert!(route(&r, "web-secure")["listener"].is_null());
    // The default backend repeats `if tls`: never reached.
    assert!(
        notes_at(&out, line_of(&text, "default_backend secure")).contains("never reached"),
        "{:?}",
        out.notes
    );
}

#[test]
fn order_differences_are_kept_or_noted() {
    let text = format!(
        "{HEAD}frontend web\n  bind :80\n  use_backend a if {{ path_beg /api/ }}\n  use_backend b if {{ hdr(host) x.test }}\n  use_backend a if {{ hdr(host) x.test y.test }}\n  use_backend a if {{ hdr(host) z.test }}\n  use_backend b if {{ hdr(host) z.test }} {{ path_beg /z/ }}\nbackend a\n  server a 10.0.0.1:80\nbackend b\n  server b 10.0.0.2:80\n"
    );
    let out = run(&text);
    let r = routes(&yaml(&out));
    let find = |hosts: &[&str], prefix: Option<&str>| {
        r.iter()
            .find(|route| {
                route["hosts"] == serde_yaml::to_value(hosts).expect("hosts")
                    && route["path_prefix"].as_str() == prefix
            })
            .unwrap_or_else(|| panic!("no route {hosts:?} {prefix:?} in {r:?}"))
            .clone()
    };
    // HAProxy sent x.test/api/ to the earlier any-host rule: x.test gets that route too.
    assert_eq!(find(&["x.test"], Some("/api/"))["upstream"], s("a"));
    assert_eq!(find(&["x.test"], None)["upstream"], s("b"));
    assert!(
        notes_at(
            &out,
            line_of(&text, "use_backend b if { hdr(host) x.test }")
        )
        .is_empty(),
        "{:?}",
        out.notes
    );
    // x.test went to b first: the third rule keeps y.test only.
    assert_eq!(find(&["y.test"], None)["upstream"], s("a"));
    // A longer prefix for the same host after a rule that takes it all: noted.
    assert!(
        notes_at(&out, line_of(&text, "path_beg /z/"))
            .contains("ferrogate prefers the more specific host"),
        "{:?}",
        out.notes
    );
}

#[test]
fn header_rules_become_route_headers() {
    let text = format!(
        "{HEAD}frontend web\n  bind :443 ssl crt /x.pem\n  http-request set-header X-Env prod\n  http-request add-header X-Via \"%[src] {{edge}}\"\n  http-request del-header X-Internal\n  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}\n  http-request set-header X-Plain yes if !{{ ssl_fc }}\n  http-request set-header X-Cond 1 if {{ path_beg /x }}\n  http-request set-header Connection close\n  http-request add-header X-T %[ssl_c_s_dn]\n  http-response set-header Cache-Control no-store\n  http-response del-header Server\n  default_backend app\nbackend app\n  http-request add-header X-Client-IP %[src]\n  http-request set-header X-Backend app\n  server a 10.0.0.1:80\n"
    );
    let out = run(&text);
    let v = yaml(&out);
    let r = &routes(&v)[0];
    let request = &r["headers"]["request"];
    assert_eq!(request["set"]["X-Env"], s("prod"));
    assert_eq!(request["set"]["X-Backend"], s("app"));
    assert_eq!(request["add"]["X-Via"], s("{client_ip} {{edge}}"));
    assert_eq!(request["remove"][0], s("X-Internal"));
    assert!(
        request["set"]["X-Plain"].is_null(),
        "!ssl_fc on a TLS route never applies"
    );
    assert!(
        request["set"]["X-Forwarded-Proto"].is_null(),
        "ferrogate sets it"
    );
    assert!(request["add"]["X-Client-IP"].is_null(), "ferrogate sets it");
    assert_eq!(
        r["headers"]["response"]["set"]["Cache-Control"],
        s("no-store")
    );
    assert_eq!(r["headers"]["response"]["remove"][0], s("Server"));
    assert!(out.yaml.contains("ferrogate sets X-Forwarded-Proto itself"));
    assert!(out.yaml.contains("ferrogate sets X-Client-IP itself"));
    assert!(notes_at(&out, line_of(&text, "X-Cond")).contains("`{ ssl_fc }` only"));
    assert!(notes_at(&out, line_of(&text, "Connection close")).contains("hop-by-hop"));
    assert!(notes_at(&out, line_of(&text, "ssl_c_s_dn")).contains("no ferrogate placeholder"));
}

#[test]
fn denies_become_refusal_lists_or_refusing_routes() {
    let text = format!(
        "{HEAD}frontend web\n  bind :443 ssl crt /x.pem\n  http-request deny if {{ hdr_sub(user-agent) -i curl }}\n  http-request deny if {{ src 192.0.2.0/24 }}\n  http-request deny if !{{ src 10.0.0.0/8 }} {{ path_beg /admin/ }}\n  http-request deny deny_status 429 if {{ path_beg /v1/ }} {{ method POST }}\n  use_backend app if {{ hdr(host) a.test }}\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    );
    let out = run(&text);
    let v = yaml(&out);
    let r = routes(&v);
    for route in &r {
        assert_eq!(route["deny_user_agents"][0], s("(?i)curl"), "{route:?}");
        assert_eq!(route["deny"][0], s("192.0.2.0/24"));
    }
    // Within a.test and within any host: /admin/ only for 10/8, POST /v1/ refused with 429.
    let admin: Vec<&Value> = r
        .iter()
        .filter(|x| x["path_prefix"] == s("/admin/"))
        .collect();
    assert_eq!(admin.len(), 2, "{r:?}");
    assert!(admin
        .iter()
        .all(|x| x["allow"][0] == s("10.0.0.0/8") && x["upstream"] == s("app")));
    let refused: Vec<&Value> = r.iter().filter(|x| !x["respond"].is_null()).collect();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["respond"]["status"], Value::from(429));
    assert_eq!(refused[0]["respond"]["body"], s("Too Many Requests\n"));
    assert_eq!(refused[0]["match"]["methods"][0], s("POST"));
    // A refusing route comes before the route it narrows.
    let a_test = |x: &&Value| x["hosts"][0] == s("a.test");
    let deny = r
        .iter()
        .position(|x| a_test(&x) && !x["respond"].is_null())
        .expect("refusing route for a.test");
    let base = r
        .iter()
        .position(|x| a_test(&x) && x["path_prefix"].is_null())
        .expect("base route for a.test");
    assert!(deny < base, "{r:?}");
}

#[test]
fn redirects_and_returns_answer_at_the_edge() {
    let text = format!(
        "{HEAD}frontend web\n  bind :443 ssl crt /x.pem\n  http-request redirect location https://new.test%[pathq] code 301 if {{ hdr(host) -i old.test }}\n  http-request redirect prefix https://x.test/ if {{ path_beg /moved/ }}\n  http-request return status 200 content-type text/plain string ok if {{ path /ping }}\n  http-request redirect location /x code 200\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\n"
    );
    let out = run(&text);
    let r = routes(&yaml(&out));
    let old = r
        .iter()
        .find(|x| x["hosts"][0] == s("old.test"))
        .expect("redirect route");
    assert_eq!(old["redirect"]["to"], s("https://new.test{path}"));
    assert_eq!(old["redirect"]["status"], Value::from(301));
    let moved = r
        .iter()
        .find(|x| x["path_prefix"] == s("/moved/"))
        .expect("prefix redirect");
    assert_eq!(moved["redirect"]["to"], s("https://x.test{path}"));
    assert_eq!(moved["redirect"]["status"], Value::from(302));
    let ping = r
        .iter()
        .find(|x| x["path_prefix"] == s("/ping"))
        .expect("return");
    assert_eq!(ping["respond"]["body"], s("ok"));
    assert_eq!(ping["respond"]["content_type"], s("text/plain"));
    assert!(notes_at(&out, line_of(&text, "code 200")).contains("code 200"));
}

#[test]
fn backends_become_upstreams() {
    let text = format!(
        "{HEAD}  default-server inter 4s rise 3\n  timeout connect 3s\n  timeout server 10m\n  timeout tunnel 1h\n  retries 3\nfrontend web\n  bind :80\n  use_backend b if {{ path_beg /b/ }}\n  use_backend c if {{ path_beg /c/ }}\n  use_backend d if {{ path_beg /d/ }}\n  default_backend a\nbackend a\n  balance roundrobin\n  cookie SRV insert indirect nocache maxidle 2h\n  option httpchk GET /health\n  http-check expect status 204\n  timeout check 1s\n  server a1 10.0.0.1:80 check weight 5 maxconn 64 cookie a1 slowstart 20s\n  server a2 10.0.0.2:80 check weight 0\n  server a3 10.0.0.3:80 check disabled\n  server a4 10.0.0.4:80 backup\n  server a5 10.0.0.5\n  server a6 10.0.0.6:80 send-proxy\nbackend b\n  balance leastconn\n  stick-table type ip size 1m expire 30m\n  stick on src\n  option httpchk /ready\n  retries 20\n  server b1 10.0.1.1:443 ssl verify none sni str(b.internal)\n  server b2 b-2.internal:443 ssl verify none sni str(b.internal)\nbackend c\n  balance source\n  server c1 10.0.2.1:443 ssl verify required ca-file /etc/ca.pem check\nbackend d\n  balance uri\n  server d1 10.0.3.1:80\n"
    );
    let out = run(&text);
    let v = yaml(&out);
    let a = &v["upstreams"]["a"];
    assert_eq!(a["balance"], s("round_robin"));
    assert_eq!(a["sticky"]["cookie"], s("SRV"));
    assert_eq!(a["sticky"]["ttl"], s("2h"));
    let health = &a["health"];
    assert_eq!(health["path"], s("/health"));
    assert_eq!(health["interval"], s("4s"));
    assert_eq!(health["timeout"], s("1s"));
    assert_eq!(health["rise"], Value::from(3));
    assert_eq!(health["expect_status"], Value::from(204));
    assert_eq!(health["slow_start"], s("20s"));
    let servers = a["servers"].as_sequence().cloned().unwrap_or_default();
    assert_eq!(
        servers.len(),
        4,
        "backup and portless servers are left out: {servers:?}"
    );
    assert_eq!(servers[0]["weight"], Value::from(5));
    assert_eq!(servers[0]["max_inflight"], Value::from(64));
    assert_eq!(servers[1]["drain"], Value::from(true));
    assert_eq!(servers[2]["drain"], Value::from(true));
    assert_eq!(a["timeouts"]["connect"], s("3s"));
    assert_eq!(a["timeouts"]["read"], s("10m"));
    assert_eq!(a["timeouts"]["websocket_idle"], s("1h"));
    assert_eq!(a["retries"], Value::from(3));
    assert!(notes_at(&out, line_of(&text, "server a3")).contains("disabled"));
    assert!(notes_at(&out, line_of(&text, "server a4")).contains("backup"));
    assert!(notes_at(&out, line_of(&text, "server a5")).contains("no port"));
    assert!(notes_at(&out, line_of(&text, "server a6")).contains("send-proxy"));
    let b = &v["upstreams"]["b"];
    assert_eq!(b["balance"], s("least_inflight"));
    assert_eq!(b["sticky"]["mode"], s("client_ip"));
    assert_eq!(b["sticky"]["ttl"], s("30m"));
    assert_eq!(b["retries"], Value::from(10));
    assert_eq!(b["tls"]["sni"], s("b.internal"));
    assert_eq!(b["tls"]["verify"], Value::from(false));
    assert_eq!(b["servers"][1]["address"], s("b-2.internal:443"));
    assert!(b["health"].is_null(), "no server has check");
    assert!(
        notes_at(&out, line_of(&text, "option httpchk /ready")).contains("no server has `check`")
    );
    assert!(notes_at(&out, line_of(&text, "retries 20")).contains("at most 10"));
    let c = &v["upstreams"]["c"];
    assert_eq!(c["balance"], s("hash"));
    assert_eq!(c["tls"]["ca"], s("/etc/ca.pem"));
    assert!(notes_at(&out, line_of(&text, "server c1")).contains("TCP connect check"));
    assert_eq!(v["upstreams"]["d"]["balance"], s("hash"));
    assert!(notes_at(&out, line_of(&text, "balance uri")).contains("not the URI"));
}

#[test]
fn defaults_are_inherited_in_order_and_by_name() {
    let text = "defaults base\n  mode http\n  timeout server 1m\ndefaults\n  mode tcp\nbackend db\n  server d 10.0.0.9:5432\nbackend web from base\n  server w 10.0.0.1:80\nfrontend f from base\n  bind :80\n  default_backend web\nbackend orphan from nope\n  mode http\n  server o 10.0.0.2:80\n";
    let out = run(text);
    let v = yaml(&out);
    assert_eq!(v["upstreams"]["web"]["timeouts"]["read"], s("1m"));
    assert!(v["upstreams"]["db"].is_null());
    assert!(notes_at(&out, line_of(text, "backend db")).contains("mode tcp"));
    assert!(notes_at(&out, line_of(text, "backend orphan"))
        .contains("no defaults section named `nope`"));
    assert!(out.yaml.contains("no route sends to it"), "orphan is kept");
}

#[test]
fn global_and_other_sections_are_noted() {
    let text = format!(
        "global\n  nbthread 4\n  daemon\n  stats socket /run/h.sock\n  tune.bufsize 32768\nuserlist ops\n  user a password x\n{HEAD}listen app\n  bind 127.0.0.1:8080\n  stats enable\n  server a 10.0.0.1:80\nlisten stats\n  bind :8404\n  stats enable\n  stats uri /stats\n"
    );
    let out = run(&text);
    let v = yaml(&out);
    assert_eq!(v["workers"], Value::from(4));
    assert!(notes_at(&out, line_of(&text, "daemon")).contains("foreground"));
    assert!(notes_at(&out, line_of(&text, "stats socket")).contains("ferrogate ctl"));
    assert!(notes_at(&out, line_of(&text, "tune.bufsize")).contains("tuning"));
    assert!(notes_at(&out, line_of(&text, "userlist")).contains("userlist"));
    assert!(notes_at(&out, line_of(&text, "bind :8404")).contains("stats page"));
    // The listen section serves itself on its own listener; the stats one makes no listener.
    assert_eq!(v["listeners"]["http"], s("127.0.0.1:8080"));
    let r = routes(&v);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["upstream"], s("app"));
    assert!(v["listeners"]["extra"].is_null());
}

#[test]
fn nothing_to_translate_is_an_error_with_its_notes() {
    match import_text("global\n  daemon\n", "h.cfg", "h.cfg") {
        Err(ImportError::NothingTranslated { notes, .. }) => assert_eq!(notes.len(), 1),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        import(std::path::Path::new("/nonexistent/haproxy.cfg")),
        Err(ImportError::Read { .. })
    ));
    let notes = vec![Note {
        line: 3,
        message: "x".into(),
    }];
    assert_eq!(render_notes("a.cfg", &notes), "a.cfg:3: x\n");
}

#[test]
fn the_output_is_stable() {
    let text = format!(
        "{HEAD}frontend web\n  bind :443 ssl crt /x.pem\n  acl a hdr(host) a.test b.test c.test\n  use_backend x if a\n  default_backend y\nbackend x\n  server x 10.0.0.1:80\nbackend y\n  server y 10.0.0.2:80\n"
    );
    let first = run(&text).yaml;
    for _ in 0..5 {
        assert_eq!(run(&text).yaml, first);
    }
}

#[test]
fn request_rules_client_certificates_and_upstream_tls_are_translated() {
    let text = format!(
        "{HEAD}frontend web\n  bind :443 ssl crt /c/site.pem ca-file /c/ca.pem verify optional\n  acl chat hdr(host) -i chat.example.com\n  acl writes method POST\n  http-request deny if {{ hdr_sub(user-agent) -i curl }}\n  http-request redirect location https://chat.example.com/ if {{ hdr(host) -i old.example.com }}\n  http-request set-header X-Env prod\n  http-response del-header X-Powered-By\n  use_backend admin if chat writes\n  use_backend app if chat\n  default_backend app\nbackend app\n  server a 10.0.0.1:80\nbackend admin\n  server b 10.0.0.2:443 ssl verify none\n"
    );
    let full = run(&text);
    for key in [
        "client_auth",
        "match:",
        "redirect:",
        "headers:",
        "deny_user_agents",
        "tls: {",
    ] {
        assert!(full.yaml.contains(key), "{key} not in\n{}", full.yaml);
    }
    for needle in [
        "ca-file",
        "user-agent",
        "redirect location",
        "set-header X-Env",
        "del-header X-Powered-By",
        "use_backend admin",
        "server b",
    ] {
        let notes = notes_at(&full, line_of(&text, needle));
        assert!(notes.is_empty(), "{needle}: {notes}");
    }
}
