//! The live snapshot behind an ArcSwap: the request path `load()`s it, only start-up and reload `swap()` it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Snapshot;

/// Holds the current [`Snapshot`]. A request keeps the `Arc` it loaded for its whole life, so a
/// swap never changes the world under a request in flight.
#[derive(Debug)]
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
}

impl SnapshotStore {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot in force now.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Installs a complete new snapshot in one atomic step and returns the old one.
    pub fn swap(&self, next: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(next))
    }
}
