//! The harness's own start loops, made to lose a port on purpose.

use std::net::TcpListener;
use std::process::{Command, Stdio};

use super::ports::{wait_holding, PortTaken};
use super::sockets::Bound;
use super::{DaemonBuilder, BIN};
use crate::backends::closed_port;

/// A socket bound to the http address without listening: invisible as a listener, so the
/// daemon is started, finds the address in use and exits; the harness starts it again on
/// fresh addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_start_moves_off_a_listener_address_the_daemon_finds_in_use() {
    let squatter = closed_port();
    let mut builder = DaemonBuilder::new();
    builder.http = squatter.addr;
    let d = builder.start().await;
    // At least the start on the squatted address was discarded; a further one is the harness
    // losing a fresh port to a test running beside this one, which it is built to survive.
    assert!(!d.discarded_pids.is_empty(), "{}", d.log());
    assert_ne!(d.http, squatter.addr);
    assert!(!d.log().contains("is in use"), "{}", d.log());
}

/// An address another process listens on is seen before the daemon is started at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_start_skips_an_address_held_before_start() {
    let builder = DaemonBuilder::new();
    let squatter = TcpListener::bind(builder.http).expect("bind the picked address");
    let d = builder.start().await;
    assert!(d.discarded_pids.is_empty());
    assert_ne!(d.http, squatter.local_addr().expect("addr"));
}

/// A program told to listen where this process already does: taken, and killed.
#[test]
fn wait_holding_reports_an_address_another_process_holds() {
    let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = squatter.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("backend.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(BIN)
        .args(["demo-backend", "--listen", &addr.to_string()])
        .stdout(Stdio::from(log.try_clone().expect("clone")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn demo-backend");
    let result = wait_holding(
        &mut child,
        "demo-backend",
        &[Bound::Tcp(addr)],
        &log_path,
        &["Address already in use"],
    );
    assert!(matches!(result, Err(PortTaken(_))), "{result:?}");
    assert!(child.try_wait().expect("try_wait").is_some(), "killed");
}
