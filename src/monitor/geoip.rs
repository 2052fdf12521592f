//! The country database watcher, a background service: every few seconds it looks at the file
//! of the database the snapshot in force uses and reads it again when it changed (a
//! geoipupdate run, a package upgrade); a bad new file keeps the database in force, and the log
//! says why.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::geoip::Refresh;
use crate::runtime::SnapshotStore;

/// How often the database file is looked at (a stat; it is read only when it changed).
pub const GEOIP_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The watcher service.
pub struct GeoipWatcher {
    snapshots: Arc<SnapshotStore>,
    interval: Duration,
}

impl GeoipWatcher {
    pub fn new(snapshots: Arc<SnapshotStore>) -> Self {
        Self {
            snapshots,
            interval: GEOIP_CHECK_INTERVAL,
        }
    }

    /// One look at the database file of the snapshot in force (reads it on a blocking thread
    /// when it changed).
    pub async fn check_once(&self) -> Option<Refresh> {
        let handle = self.snapshots.load().geoip.clone()?;
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = handle.refresh();
            (handle, outcome)
        })
        .await;
        let (handle, outcome) = match outcome {
            Ok(done) => done,
            Err(error) => {
                tracing::warn!(%error, "country database check failed");
                return None;
            }
        };
        let path = handle.path().display();
        match &outcome {
            Refresh::Unchanged => {}
            Refresh::Reloaded(database) => {
                tracing::info!(path = %path, %database, "country database reloaded")
            }
            Refresh::Kept(reason) => {
                tracing::warn!(path = %path, %reason, "country database file unusable; keeping the one in force")
            }
        }
        Some(outcome)
    }
}

#[async_trait]
impl BackgroundService for GeoipWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
            self.check_once().await;
        }
    }
}
