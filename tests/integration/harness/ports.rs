//! Ports for a server that cannot bind port 0 and report what it got: the daemon, whose
//! listeners come from the YAML. It is given ports the kernel handed out a moment ago, counts as
//! up only once it alone holds its sockets, and is started again on fresh ports when it reports
//! one taken (a parallel test got there first).

use std::net::SocketAddr;

/// How many times a server is started on fresh ports before the test gives up.
pub const START_ATTEMPTS: usize = 5;

/// A start attempt lost a port to somebody else: what the server said about it.
#[derive(Debug)]
pub struct PortTaken(pub String);

/// `count` distinct loopback addresses that were free a moment ago (bound to port 0 together,
/// read, released). Only for the start loop that retries on [`PortTaken`]; anything that can
/// bind 127.0.0.1:0 itself does so and keeps its listener.
pub(in crate::harness) fn pick_addrs(count: usize) -> Vec<SocketAddr> {
    let held: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().expect("local_addr"))
        .collect()
}
