//! SIGHUP trigger: `systemctl reload` (ExecReload=kill -HUP) reloads the configuration.

use std::sync::Arc;

use tokio::signal::unix::Signal;

use super::{Reloader, Trigger};

/// Reloads on every SIGHUP until the process ends. The handler must already be registered (see
/// [`crate::lifecycle`]), so that a SIGHUP never falls back to its default action (exit).
pub async fn reload_on_sighup(reloader: Arc<Reloader>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        let _ = reloader.reload(Trigger::Signal).await;
    }
}
