//! The HTTP DNS providers (cloudflare, regru, webhook) end to end against Pebble, with a local
//! HTTP server standing in for the third-party APIs: it records each request's shape and puts
//! the TXT record into pebble-challtestsrv, so the CA really validates what the provider sent.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::acme_env::{servers_installed, wait_verified, ChallTestSrv, ChallengePort, Pebble};
use crate::backends::{read_request, RecordedRequest};
use crate::harness::DaemonBuilder;

const ISSUE_TIMEOUT: Duration = Duration::from_secs(45);
const CF_TOKEN: &str = "cf-test-token";
const REGRU_PASSWORD: &str = "regru pass&word";

/// POSTs JSON to challtestsrv's management API (blocking; tiny).
fn challtest(management: SocketAddr, path: &str, body: &serde_json::Value) {
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(management).expect("challtestsrv");
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
}

/// Decodes `application/x-www-form-urlencoded`.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf8")
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// What the stand-in answers for one request (and what it does to challtestsrv).
fn respond(management: SocketAddr, req: &RecordedRequest) -> serde_json::Value {
    let path = req.target.split('?').next().unwrap_or_default();
    let query = req
        .target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default();
    match (req.method.as_str(), path) {
        ("GET", "/cf/zones") => {
            let found = query == "name=acme.test";
            let result = if found {
                serde_json::json!([{ "id": "zone1", "name": "acme.test" }])
            } else {
                serde_json::json!([])
            };
            serde_json::json!({ "success": true, "errors": [], "result": result })
        }
        ("POST", "/cf/zones/zone1/dns_records") => {
            let record: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
            let host = format!("{}.", record["name"].as_str().expect("name"));
            challtest(
                management,
                "/set-txt",
                &serde_json::json!({ "host": host, "value": record["content"] }),
            );
            serde_json::json!({ "success": true, "errors": [], "result": { "id": "rec1" } })
        }
        ("GET", "/cf/zones/zone1/dns_records") => {
            let value = query
                .split('&')
                .find_map(|p| p.strip_prefix("content="))
                .unwrap_or_default();
            serde_json::json!({ "success": true, "errors": [], "result": [{ "id": "rec1", "content": value }] })
        }
        ("DELETE", "/cf/zones/zone1/dns_records/rec1") => {
            challtest(
                management,
                "/clear-txt",
                &serde_json::json!({ "host": "_acme-challenge.cf.acme.test." }),
            );
            serde_json::json!({ "success": true, "errors": [], "result": { "id": "rec1" } })
        }
        ("POST", "/regru/zone/add_txt") | ("POST", "/regru/zone/remove_record") => {
            let fields = form_fields(&req.body);
            let input = fields
                .iter()
                .find(|(k, _)| k == "input_data")
                .expect("input_data");
            let input: serde_json::Value = serde_json::from_str(&input.1).expect("input json");
            let host = format!(
                "{}.{}.",
                input["subdomain"].as_str().expect("subdomain"),
                input["domains"][0]["dname"].as_str().expect("dname")
            );
            if path.ends_with("add_txt") {
                challtest(
                    management,
                    "/set-txt",
                    &serde_json::json!({ "host": host, "value": input["text"] }),
                );
            } else {
                challtest(
                    management,
                    "/clear-txt",
                    &serde_json::json!({ "host": host }),
                );
            }
            serde_json::json!({ "result": "success", "answer": { "domains": [{ "dname": "acme.test", "result": "success" }] } })
        }
        ("POST", "/hook/present") | ("POST", "/hook/cleanup") => {
            let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
            if path.ends_with("present") {
                challtest(
                    management,
                    "/set-txt",
                    &serde_json::json!({ "host": body["fqdn"], "value": body["value"] }),
                );
            } else {
                challtest(
                    management,
                    "/clear-txt",
                    &serde_json::json!({ "host": body["fqdn"] }),
                );
            }
            serde_json::json!({})
        }
        _ => {
            serde_json::json!({ "success": false, "errors": [{ "message": "unexpected request" }] })
        }
    }
}

/// Starts the stand-in; returns its address and the recorded requests.
async fn stand_in(management: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<RecordedRequest>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                while let Ok(Some(req)) = read_request(&mut reader).await {
                    let req_for_answer = req.clone();
                    let answer =
                        tokio::task::spawn_blocking(move || respond(management, &req_for_answer))
                            .await
                            .expect("join")
                            .to_string();
                    seen.lock().expect("lock").push(req);
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", answer.len());
                    if write.write_all(head.as_bytes()).await.is_err()
                        || write.write_all(answer.as_bytes()).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    (addr, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_regru_and_webhook_send_the_documented_requests() {
    assert!(servers_installed(), "run scripts/setup.sh");
    let dns = ChallTestSrv::start();
    let (api, requests) = stand_in(dns.management).await;
    let http01 = ChallengePort::open().await;
    let builder = DaemonBuilder::new();
    let pebble = Pebble::start(http01.port(), dns.dns);
    let secrets = tempfile::tempdir().expect("secrets");
    let token = secrets.path().join("cf.token");
    std::fs::write(&token, format!("{CF_TOKEN}\n")).expect("token");
    let password = secrets.path().join("regru.pass");
    std::fs::write(&password, REGRU_PASSWORD).expect("password");
    let ns = dns.dns;
    let providers = format!(
        "  dns_providers:\n    cf: {{ type: cloudflare, api_token_file: {}, api_url: 'http://{api}/cf', nameservers: [{ns}], propagation_timeout: 20s }}\n    reg: {{ type: regru, username: test-user, password_file: {}, zone: acme.test, api_url: 'http://{api}/regru', nameservers: [{ns}], propagation_timeout: 20s }}\n    web: {{ type: webhook, url: 'http://{api}/hook', nameservers: [{ns}], propagation_timeout: 20s }}\n",
        token.display(),
        password.display()
    );
    let daemon = builder
        .acme_certificate("{ name: cf, domains: [cf.acme.test], acme: { challenge: dns-01, dns_provider: cf } }")
        .acme_certificate("{ name: reg, domains: [reg.acme.test], acme: { challenge: dns-01, dns_provider: reg } }")
        .acme_certificate("{ name: web, domains: [web.acme.test], acme: { challenge: dns-01, dns_provider: web } }")
        .yaml(&pebble.acme_yaml(&providers))
        .start()
        .await;
    http01.forward_to(daemon.http);
    let root = pebble.issuing_root();
    let https = daemon.https;
    tokio::task::spawn_blocking(move || {
        for name in ["cf.acme.test", "reg.acme.test", "web.acme.test"] {
            wait_verified(&root, name, https, ISSUE_TIMEOUT);
        }
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = requests.lock().expect("lock").clone();
    let find = |method: &str, prefix: &str| -> Vec<&RecordedRequest> {
        requests
            .iter()
            .filter(|r| r.method == method && r.target.starts_with(prefix))
            .collect()
    };

    // Cloudflare: bearer token from the file, zone looked up by name, TXT created, then found by
    // name and content and deleted.
    let created = find("POST", "/cf/zones/zone1/dns_records");
    assert_eq!(created.len(), 1, "{requests:#?}");
    assert_eq!(
        created[0].header("authorization"),
        Some(format!("Bearer {CF_TOKEN}").as_str())
    );
    let record: serde_json::Value = serde_json::from_slice(&created[0].body).expect("json");
    assert_eq!(record["type"], "TXT");
    assert_eq!(record["name"], "_acme-challenge.cf.acme.test");
    assert_eq!(record["ttl"], 120);
    let value = record["content"].as_str().expect("content").to_string();
    assert!(!find("GET", "/cf/zones?name=_acme-challenge.cf.acme.test").is_empty());
    assert!(!find("GET", "/cf/zones?name=acme.test").is_empty());
    let lookup = find("GET", "/cf/zones/zone1/dns_records?");
    assert_eq!(lookup.len(), 1, "{requests:#?}");
    assert!(
        lookup[0]
            .target
            .contains("type=TXT&name=_acme-challenge.cf.acme.test&content="),
        "{}",
        lookup[0].target
    );
    assert!(lookup[0].target.contains(&value));
    assert_eq!(find("DELETE", "/cf/zones/zone1/dns_records/rec1").len(), 1);

    // reg.ru: form post with username, password, input_format=json and input_data.
    let added = find("POST", "/regru/zone/add_txt");
    assert_eq!(added.len(), 1, "{requests:#?}");
    assert_eq!(
        added[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let fields = form_fields(&added[0].body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .expect(name)
    };
    assert_eq!(field("username"), "test-user");
    assert_eq!(field("password"), REGRU_PASSWORD);
    assert_eq!(field("input_format"), "json");
    let input: serde_json::Value = serde_json::from_str(&field("input_data")).expect("json");
    assert_eq!(
        input["domains"],
        serde_json::json!([{ "dname": "acme.test" }])
    );
    assert_eq!(input["subdomain"], "_acme-challenge.reg");
    assert_eq!(input["output_content_type"], "plain");
    let text = input["text"].as_str().expect("text").to_string();
    let removed = find("POST", "/regru/zone/remove_record");
    assert_eq!(removed.len(), 1, "{requests:#?}");
    let fields = form_fields(&removed[0].body);
    let input = fields
        .iter()
        .find(|(k, _)| k == "input_data")
        .expect("input_data");
    let input: serde_json::Value = serde_json::from_str(&input.1).expect("json");
    assert_eq!(input["subdomain"], "_acme-challenge.reg");
    assert_eq!(input["content"], text.as_str());
    assert_eq!(input["record_type"], "TXT");

    // Webhook: JSON {fqdn, value} to /present then /cleanup.
    let present = find("POST", "/hook/present");
    let cleanup = find("POST", "/hook/cleanup");
    assert_eq!((present.len(), cleanup.len()), (1, 1), "{requests:#?}");
    let body: serde_json::Value = serde_json::from_slice(&present[0].body).expect("json");
    assert_eq!(body["fqdn"], "_acme-challenge.web.acme.test.");
    assert_eq!(present[0].body, cleanup[0].body);

    // Secrets never reach the log.
    let log = daemon.log();
    assert!(
        !log.contains(CF_TOKEN) && !log.contains(REGRU_PASSWORD),
        "{log}"
    );
}
