//! The addresses a daemon starting afresh (not a binary upgrade) must be able to listen on.
//! pingora binds its listeners in the background, retries an address in use for half a minute
//! and then stops only that listener's thread, so a taken port would leave a daemon that reports
//! ready without it. Checking first turns that into a start-up error naming the listener.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};

/// Binds each `(name, address)` once and lets it go again; the first that cannot be bound is an
/// error naming it and why (another process listens there, a port below 1024 without the
/// capability, an address this host does not have).
pub fn check_free<'a>(
    addresses: impl IntoIterator<Item = (&'a str, SocketAddr)>,
) -> Result<(), String> {
    for (name, address) in addresses {
        if let Err(error) = TcpListener::bind(address) {
            let why = match error.kind() {
                ErrorKind::AddrInUse => "the address is in use by another process".to_string(),
                ErrorKind::PermissionDenied => format!(
                    "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE): {error}"
                ),
                _ => error.to_string(),
            };
            return Err(format!("{name} cannot listen on {address}: {why}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_address_is_named() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = held.local_addr().expect("addr");
        let free = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr")
        };
        assert!(check_free([("listener http", free)]).is_ok());
        let error =
            check_free([("listener http", free), ("listener https", taken)]).expect_err("taken");
        assert!(error.contains("listener https"), "{error}");
        assert!(error.contains(&taken.to_string()), "{error}");
        assert!(error.contains("in use"), "{error}");
    }
}
