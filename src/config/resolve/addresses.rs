//! Upstream servers written as `name:port`: looked up in the system's resolver, the first address
//! kept (DNS discovery re-resolves names that change; this is the address a server starts with).

use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::draft::{DraftServer, DraftUpstream, ServerHost};
use crate::config::model::{Server, Upstream};
use crate::config::report::Report;

/// The upstream with every server whose address resolves; the others are reported.
pub(super) fn resolve_upstream(draft: DraftUpstream, report: &mut Report) -> Upstream {
    let mut upstream = draft.upstream;
    upstream.servers = draft
        .servers
        .into_iter()
        .filter_map(|server| match socket_of(&server) {
            Ok(socket) => Some(Server {
                address: server.address,
                socket,
                weight: server.weight,
                max_inflight: server.max_inflight,
                drain: server.drain,
                models: server.models,
                kv_events: server.kv_events,
            }),
            Err(message) => {
                report.at_value(&server.at, message);
                None
            }
        })
        .collect();
    upstream
}

fn socket_of(server: &DraftServer) -> Result<SocketAddr, String> {
    match &server.host {
        ServerHost::Socket(socket) => Ok(*socket),
        ServerHost::Name { host, port } => lookup(&server.address, host, *port),
    }
}

/// The first address `host` resolves to, with `port`; `address` is the text for messages.
fn lookup(address: &str, host: &str, port: u16) -> Result<SocketAddr, String> {
    match (host, port).to_socket_addrs() {
        Ok(mut found) => found
            .next()
            .ok_or_else(|| format!("cannot resolve server address `{address}`: no address found")),
        Err(error) => Err(format!(
            "cannot resolve server address `{address}`: {error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_unknown_ones_say_which() {
        assert_eq!(
            lookup("localhost:8000", "localhost", 8000).map(|a| a.port()),
            Ok(8000)
        );
        let message = lookup("no-such-host.invalid:80", "no-such-host.invalid", 80).unwrap_err();
        assert!(message.contains("`no-such-host.invalid:80`"), "{message}");
    }
}
