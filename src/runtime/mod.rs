//! The compiled, immutable world the proxy reads ([`Snapshot`]), the one place it is swapped
//! ([`SnapshotStore`]), and the owner of every piece of state that outlives a configuration with
//! the reload transaction over it ([`Live`]).

pub mod live;
pub mod metrics;
pub mod snapshot;
pub mod store;
#[cfg(test)]
pub(crate) mod test_world;

pub use live::{Live, PrepareError, Prepared};
pub use snapshot::{ListenerView, RouteTarget, Snapshot, UpstreamRuntime};
pub use store::SnapshotStore;
