//! Ports for servers that cannot bind port 0 and report what they got: the daemon (its listeners
//! come from the YAML) and outside programs (redis-server, pebble, named, ...). Such a server is
//! given ports the kernel handed out a moment ago, counts as up only once it alone holds its
//! sockets, and is started again on fresh ports when it reports one taken (a parallel test got
//! there first).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::sockets::{holder, Bound, Holder};

/// How many times a server is started on fresh ports before the test gives up.
pub const START_ATTEMPTS: usize = 5;

/// How long an outside server may take to hold its sockets.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(15);

/// A start attempt lost a port to somebody else: what the server said about it.
#[derive(Debug)]
pub struct PortTaken(pub String);

/// `count` distinct loopback addresses that were free a moment ago (bound to port 0 together,
/// read, released). Only for the start loops that retry on [`PortTaken`]; anything that can
/// bind 127.0.0.1:0 itself does so and keeps its listener.
pub(in crate::harness) fn pick_addrs(count: usize) -> Vec<SocketAddr> {
    let held: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().expect("local_addr"))
        .collect()
}

/// Starts a server that must be told its ports: `start` gets `count` picked loopback addresses
/// and returns `Err(PortTaken)` when the server reported one of them taken; it is then called
/// again on fresh ones, at most [`START_ATTEMPTS`] times in all.
pub fn start_on_picked_ports<T>(
    what: &str,
    count: usize,
    mut start: impl FnMut(&[SocketAddr]) -> Result<T, PortTaken>,
) -> T {
    let mut taken = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match start(&pick_addrs(count)) {
            Ok(server) => return server,
            Err(PortTaken(said)) => taken.push(said),
        }
    }
    panic!(
        "{what}: a port was taken on each of {START_ATTEMPTS} attempts:\n{}",
        taken.join("\n")
    );
}

/// Waits until `child` alone holds every socket in `sockets`. When its log (`log`, written as
/// it goes) contains one of `taken_markers` (the program's words for an address somebody else
/// holds), or another process holds one of the sockets, the child is killed and `PortTaken`
/// returned. Exiting otherwise, or not holding them within [`SERVER_START_TIMEOUT`], panics.
pub fn wait_holding(
    child: &mut Child,
    what: &str,
    sockets: &[Bound],
    log: &Path,
    taken_markers: &[&str],
) -> Result<(), PortTaken> {
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    loop {
        // Exit status first: a log read afterwards holds everything the child said.
        let exited = child.try_wait().expect("try_wait");
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|line| taken_markers.iter().any(|marker| line.contains(marker)))
        {
            kill(child);
            return Err(PortTaken(format!("{what}: {line}")));
        }
        if let Some(status) = exited {
            panic!("{what} exited during start-up with {status}:\n{text}");
        }
        let holders: Vec<(Bound, Holder)> = sockets
            .iter()
            .map(|socket| (*socket, holder(child.id(), *socket)))
            .collect();
        if let Some((socket, _)) = holders.iter().find(|(_, h)| *h == Holder::Other) {
            kill(child);
            return Err(PortTaken(format!(
                "{what}: another process holds {socket:?}"
            )));
        }
        if holders.iter().all(|(_, h)| *h == Holder::Alone) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            kill(child);
            panic!("{what} did not listen on {sockets:?} within {SERVER_START_TIMEOUT:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
