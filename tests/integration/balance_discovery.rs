//! DNS discovery against a real DNS server the test runs on loopback (UDP, A/AAAA): servers
//! appear and disappear as the records change, without a reload.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::UdpSocket;

use crate::balance_support::{backend, get, lb_builder, servers_of, wait_status, Replica};
use crate::harness::ports::START_ATTEMPTS;

const TYPE_A: u16 = 1;

/// A tiny authoritative DNS server: every name has the A records in `records`, no AAAA.
struct DnsServer {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Ipv4Addr>>>,
    queries: Arc<AtomicUsize>,
}

impl DnsServer {
    async fn start(records: &[Ipv4Addr]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let server = Self {
            addr: socket.local_addr().expect("dns addr"),
            records: Arc::new(Mutex::new(records.to_vec())),
            queries: Arc::new(AtomicUsize::new(0)),
        };
        let (records, queries) = (server.records.clone(), server.queries.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                queries.fetch_add(1, Ordering::SeqCst);
                let answers = records.lock().expect("records").clone();
                if let Some(reply) = answer(&buf[..n], &answers) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        server
    }

    fn set(&self, records: &[Ipv4Addr]) {
        *self.records.lock().expect("records") = records.to_vec();
    }
}

/// The reply to one query: the question echoed, then an A record per address for A queries.
fn answer(query: &[u8], records: &[Ipv4Addr]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut pos = 12;
    while *query.get(pos)? != 0 {
        pos += usize::from(query[pos]) + 1;
    }
    let qtype = u16::from_be_bytes([*query.get(pos + 1)?, *query.get(pos + 2)?]);
    let question_end = pos + 5;
    let question = query.get(12..question_end)?;
    let answers: &[Ipv4Addr] = if qtype == TYPE_A { records } else { &[] };
    let rd = query[2] & 0x01;
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&[0x84 | rd, 0x80]); // QR AA (RD) RA, NOERROR
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in answers {
        out.extend_from_slice(&[0xc0, 0x0c]); // the name in the question
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&1u32.to_be_bytes()); // ttl
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

fn addresses(status: &Value) -> BTreeSet<String> {
    servers_of(status, "app")
        .iter()
        .filter(|s| s["discovered"] == true)
        .filter_map(|s| s["address"].as_str().map(str::to_string))
        .collect()
}

fn expect(replicas: &[&Replica]) -> BTreeSet<String> {
    replicas.iter().map(|r| r.addr.to_string()).collect()
}

/// Replicas a, b and c on 127.0.0.1, .2 and .3 with one port (DNS gives addresses, the port is
/// configured): a's, which somebody may hold on .2 or .3 (or 0.0.0.0); then all three move.
async fn replicas_on_one_port() -> (Replica, Replica, Replica) {
    let mut taken = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let a = Replica::start("a").await;
        let port = a.addr.port();
        let b = Replica::start_at("b", SocketAddr::from(([127, 0, 0, 2], port))).await;
        let c = Replica::start_at("c", SocketAddr::from(([127, 0, 0, 3], port))).await;
        match (b, c) {
            (Ok(b), Ok(c)) => return (a, b, c),
            (b, c) => {
                for started in [Some(a), b.ok(), c.ok()].into_iter().flatten() {
                    started.stop();
                }
                taken.push(format!("port {port} is taken on 127.0.0.2 or 127.0.0.3"));
            }
        }
    }
    panic!("{}", taken.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_follow_the_dns_records_without_reload() {
    let (a, b, c) = replicas_on_one_port().await;
    let port = a.addr.port();
    let ip = |last: u8| Ipv4Addr::new(127, 0, 0, last);
    let dns = DnsServer::start(&[ip(1), ip(2)]).await;
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "    discovery: {{ dns: backends.test:{port}, refresh: 200ms, nameserver: {} }}\n",
                dns.addr
            ),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    let limit = Duration::from_secs(15);

    wait_status(&d, limit, "a and b discovered", |s| {
        addresses(s) == expect(&[&a, &b])
    })
    .await;
    for _ in 0..60 {
        assert_eq!(get(lb, "/", &[]).await.status, 200);
    }
    assert!(a.requests() > 0 && b.requests() > 0 && c.requests() == 0);

    // The record set changes: a leaves, c joins.
    dns.set(&[ip(2), ip(3)]);
    wait_status(&d, limit, "b and c discovered", |s| {
        addresses(s) == expect(&[&b, &c])
    })
    .await;
    let a_before = a.requests();
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        seen.insert(backend(&get(lb, "/", &[]).await));
    }
    assert_eq!(seen, ["b", "c"].map(String::from).into_iter().collect());
    assert_eq!(a.requests(), a_before);

    // No records: no servers, an honest 503.
    dns.set(&[]);
    wait_status(&d, limit, "no servers", |s| addresses(s).is_empty()).await;
    assert_eq!(get(lb, "/", &[]).await.status, 503);

    dns.set(&[ip(3)]);
    wait_status(&d, limit, "c alone", |s| addresses(s) == expect(&[&c])).await;
    assert_eq!(backend(&get(lb, "/", &[]).await), "c");
    assert!(dns.queries.load(Ordering::SeqCst) >= 4);
}
