//! Runtime settings an operator gives one server through the admin API, without a reload: its
//! admin state (`ready` | `drain` | `maint`, HAProxy's `set server … state`) and a runtime
//! weight (HAProxy's `set server … weight`). They live in the server's long-lived
//! [`ServerState`](super::ServerState), so they survive reloads while the server stays in the
//! file and go with it when it leaves; a reload that changes the server's configured weight
//! drops the runtime weight (the file's weight is the new base, as with HAProxy's
//! `load-server-state-from-file`).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::members::{Member, UpstreamPool};

/// The largest runtime weight (the configured weight's range, 1–1000, plus 0 = no new clients).
pub const MAX_RUNTIME_WEIGHT: u32 = 1000;

/// `runtime weight` slot value meaning "none set".
const NO_RUNTIME_WEIGHT: u32 = u32::MAX;

/// What an operator allows a server to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminState {
    /// Traffic as configured.
    #[default]
    Ready,
    /// No new clients; clients pinned by a sticky session stay (like `drain: true` in the file).
    Drain,
    /// No traffic at all: pinned clients move to another server.
    Maint,
}

impl AdminState {
    /// The word the API and the status page use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }

    /// `ready`, `drain` or `maint` (surrounding white space ignored).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "ready" => Some(Self::Ready),
            "drain" => Some(Self::Drain),
            "maint" => Some(Self::Maint),
            _ => None,
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Drain,
            2 => Self::Maint,
            _ => Self::Ready,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Ready => 0,
            Self::Drain => 1,
            Self::Maint => 2,
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last runtime change made to a server, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminChange {
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Who asked (the admin client's address).
    pub by: String,
    /// What changed, e.g. `state drain` or `weight 5`.
    pub what: String,
}

/// One server's runtime settings.
#[derive(Debug)]
pub struct ServerAdmin {
    state: AtomicU8,
    weight: AtomicU32,
    last_change: Mutex<Option<AdminChange>>,
}

impl Default for ServerAdmin {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(AdminState::Ready.to_u8()),
            weight: AtomicU32::new(NO_RUNTIME_WEIGHT),
            last_change: Mutex::new(None),
        }
    }
}

impl ServerAdmin {
    pub fn state(&self) -> AdminState {
        AdminState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// The runtime weight, when one is set.
    pub fn weight(&self) -> Option<u32> {
        match self.weight.load(Ordering::Acquire) {
            NO_RUNTIME_WEIGHT => None,
            weight => Some(weight),
        }
    }

    pub fn last_change(&self) -> Option<AdminChange> {
        self.last_change.lock().clone()
    }

    fn set_state(&self, state: AdminState, by: &str) {
        self.state.store(state.to_u8(), Ordering::Release);
        self.remember(by, format!("state {state}"));
    }

    fn set_weight(&self, weight: u32, by: &str) {
        self.weight.store(weight, Ordering::Release);
        self.remember(by, format!("weight {weight}"));
    }

    /// Forgets the runtime weight (the configured weight changed).
    pub(super) fn clear_weight(&self) {
        self.weight.store(NO_RUNTIME_WEIGHT, Ordering::Release);
    }

    fn remember(&self, by: &str, what: String) {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        *self.last_change.lock() = Some(AdminChange {
            at_unix_ms,
            by: by.to_string(),
            what,
        });
    }
}

/// Why a runtime change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("upstream {upstream} has no server {address}")]
    UnknownServer { upstream: String, address: String },
    #[error("weight {0} is out of range 0…{MAX_RUNTIME_WEIGHT}")]
    WeightOutOfRange(u32),
}

impl Member {
    /// The admin state an operator set (ready unless changed at run time).
    pub fn admin_state(&self) -> AdminState {
        self.state.admin.state()
    }

    /// No new clients: `drain: true` in the file, admin state `drain`, or runtime weight 0.
    /// Clients pinned to the server stay.
    pub fn draining(&self) -> bool {
        self.drain
            || self.admin_state() == AdminState::Drain
            || self.state.admin.weight() == Some(0)
    }

    /// No traffic at all (admin state `maint`).
    pub fn in_maintenance(&self) -> bool {
        self.admin_state() == AdminState::Maint
    }

    /// May take a client it has not seen before.
    pub fn takes_new_clients(&self) -> bool {
        !self.draining() && !self.in_maintenance()
    }

    /// The weight in force: the runtime one when set, else the configured one.
    pub fn current_weight(&self) -> u32 {
        self.state.admin.weight().unwrap_or(self.weight)
    }
}

impl UpstreamPool {
    /// The member at `address`: the address as configured (`host:port`) or as resolved
    /// (`ip:port`).
    pub fn member(&self, address: &str) -> Option<Arc<Member>> {
        let members = self.members();
        let by_name = members.iter().find(|m| &*m.address == address);
        by_name
            .or_else(|| members.iter().find(|m| m.socket.to_string() == address))
            .cloned()
    }

    fn member_or_error(&self, address: &str) -> Result<Arc<Member>, AdminError> {
        self.member(address)
            .ok_or_else(|| AdminError::UnknownServer {
                upstream: self.name.to_string(),
                address: address.to_string(),
            })
    }

    /// Sets a server's admin state on behalf of `by`; returns the member.
    pub fn set_admin_state(
        &self,
        address: &str,
        state: AdminState,
        by: &str,
    ) -> Result<Arc<Member>, AdminError> {
        let member = self.member_or_error(address)?;
        member.state.admin.set_state(state, by);
        // Waiters in the queue look again: a server may have left or joined the candidates.
        self.released.notify_waiters();
        Ok(member)
    }

    /// Sets a server's runtime weight (0 … [`MAX_RUNTIME_WEIGHT`]) on behalf of `by`.
    pub fn set_runtime_weight(
        &self,
        address: &str,
        weight: u32,
        by: &str,
    ) -> Result<Arc<Member>, AdminError> {
        if weight > MAX_RUNTIME_WEIGHT {
            return Err(AdminError::WeightOutOfRange(weight));
        }
        let member = self.member_or_error(address)?;
        member.state.admin.set_weight(weight, by);
        self.released.notify_waiters();
        Ok(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Server;

    fn server(address: &str, weight: u32) -> Server {
        Server::new(address.parse().expect("socket"), weight)
    }

    #[test]
    fn states_parse_and_print() {
        for state in [AdminState::Ready, AdminState::Drain, AdminState::Maint] {
            assert_eq!(AdminState::parse(state.as_str()), Some(state));
            assert_eq!(AdminState::from_u8(state.to_u8()), state);
        }
        assert_eq!(AdminState::parse(" drain\n"), Some(AdminState::Drain));
        assert_eq!(AdminState::parse("disabled"), None);
    }

    #[test]
    fn changes_apply_to_the_named_server_only() {
        let pool = UpstreamPool::new("u");
        pool.set_configured(
            &[server("127.0.0.1:1", 1), server("127.0.0.1:2", 1)],
            false,
            None,
        );
        let member = pool
            .set_admin_state("127.0.0.1:2", AdminState::Maint, "127.0.0.1:5")
            .expect("known");
        assert!(member.in_maintenance() && !member.takes_new_clients());
        let change = member.state.admin.last_change().expect("remembered");
        assert_eq!(
            (change.by.as_str(), change.what.as_str()),
            ("127.0.0.1:5", "state maint")
        );
        assert_eq!(pool.members()[0].admin_state(), AdminState::Ready);
        let unknown = pool.set_admin_state("127.0.0.1:3", AdminState::Drain, "x");
        assert_eq!(
            unknown.err(),
            Some(AdminError::UnknownServer {
                upstream: "u".into(),
                address: "127.0.0.1:3".into()
            })
        );
        assert_eq!(
            pool.set_runtime_weight("127.0.0.1:1", 1001, "x").err(),
            Some(AdminError::WeightOutOfRange(1001))
        );
        let member = pool.set_runtime_weight("127.0.0.1:1", 0, "x").expect("set");
        assert!(member.draining() && !member.in_maintenance());
        assert_eq!(member.current_weight(), 0);
    }

    #[test]
    fn runtime_settings_survive_a_rebuild_until_the_configured_weight_changes() {
        let pool = UpstreamPool::new("u");
        pool.set_configured(
            &[server("127.0.0.1:1", 2), server("127.0.0.1:2", 1)],
            false,
            None,
        );
        pool.set_admin_state("127.0.0.1:1", AdminState::Drain, "x")
            .expect("set");
        pool.set_runtime_weight("127.0.0.1:1", 7, "x").expect("set");
        pool.set_runtime_weight("127.0.0.1:2", 9, "x").expect("set");
        // Same servers, same weights: everything kept.
        pool.set_configured(
            &[server("127.0.0.1:1", 2), server("127.0.0.1:2", 1)],
            false,
            None,
        );
        let first = pool.member("127.0.0.1:1").expect("first");
        assert_eq!(first.admin_state(), AdminState::Drain);
        assert_eq!(first.current_weight(), 7);
        // The file's weight of the first changes: its runtime weight goes, its state stays.
        pool.set_configured(
            &[server("127.0.0.1:1", 3), server("127.0.0.1:2", 1)],
            false,
            None,
        );
        let first = pool.member("127.0.0.1:1").expect("first");
        assert_eq!(first.current_weight(), 3);
        assert_eq!(first.admin_state(), AdminState::Drain);
        assert_eq!(
            pool.member("127.0.0.1:2").expect("second").current_weight(),
            9
        );
        // A server that leaves and comes back starts from the file.
        pool.set_configured(&[server("127.0.0.1:2", 1)], false, None);
        pool.set_configured(
            &[server("127.0.0.1:1", 3), server("127.0.0.1:2", 1)],
            false,
            None,
        );
        let first = pool.member("127.0.0.1:1").expect("first");
        assert_eq!(first.admin_state(), AdminState::Ready);
        assert_eq!(first.state.admin.weight(), None);
    }

    #[test]
    fn a_server_is_found_by_its_configured_or_resolved_address() {
        let pool = UpstreamPool::new("u");
        let mut named = server("127.0.0.1:8080", 1);
        named.address = "localhost:8080".into();
        pool.set_configured(&[named], false, None);
        assert!(pool.member("localhost:8080").is_some());
        assert!(pool.member("127.0.0.1:8080").is_some());
        assert!(pool.member("127.0.0.1:8081").is_none());
    }
}
