//! The compiled, immutable world the proxy reads ([`Snapshot`]) and the one place it is swapped
//! ([`SnapshotStore`]).

pub mod periodic;
pub mod snapshot;
pub mod store;

pub use snapshot::{ListenerView, RouteTarget, Snapshot, UpstreamRuntime};
pub use store::SnapshotStore;
