//! Configuration reload: read → validate → prepare (cluster, certificates, snapshot) → commit
//! (one swap) → retire ([`Live`]). A bad file leaves everything in force as it was and is
//! reported with file:line:column. Triggers (SIGHUP, file changes, `POST /reload`) all end in
//! [`Reloader::reload`].

pub mod signals;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, model::Config};
use crate::runtime::Live;

/// What asked for a reload (for logs and status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    FileChange,
    Admin,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::FileChange => "file change",
            Self::Admin => "admin",
        }
    }
}

/// Performs reloads; shared by every trigger.
pub struct Reloader {
    path: PathBuf,
    live: Arc<Live>,
    /// The configuration the process started with: what cannot change without a restart.
    started_with: Config,
    /// One reload at a time.
    serial: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// `started_with` is the configuration in force in `live` at start-up.
    pub fn new(path: &Path, started_with: Config, live: Arc<Live>) -> Self {
        Self {
            path: path.to_path_buf(),
            live,
            started_with,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads the configuration file. On success returns the new generation; on failure returns
    /// every error (one per line) and leaves everything in force as it was.
    pub async fn reload(&self, trigger: Trigger) -> Result<u64, Vec<String>> {
        let _one_at_a_time = self.serial.lock().await;
        let path = self.path.clone();
        let live = self.live.clone();
        // Loading resolves upstream names and reads certificate files, preparing reads stored
        // certificates: blocking work, kept off the async workers.
        let prepared = tokio::task::spawn_blocking(move || {
            let config = config::load(&path)
                .map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
            let prepared = live.prepare(&config).map_err(|e| vec![e.to_string()])?;
            Ok::<_, Vec<String>>((config, prepared))
        })
        .await
        .map_err(|e| vec![format!("reload task failed: {e}")])
        .and_then(|prepared| prepared);
        let result = prepared.map(|(config, prepared)| {
            for warning in restart_only_changes(&self.started_with, &config) {
                tracing::warn!("{warning}");
            }
            let generation = self.live.commit(prepared);
            self.live.retire();
            generation
        });
        self.record(trigger, &result);
        result
    }

    /// Logs the outcome and hands it to the status board and metrics (the one record of it).
    fn record(&self, trigger: Trigger, result: &Result<u64, Vec<String>>) {
        self.live.reload.attempt(result.is_ok());
        self.live
            .observe
            .board
            .reload_finished(trigger.as_str(), result);
        match result {
            Ok(generation) => {
                tracing::info!(
                    trigger = trigger.as_str(),
                    generation,
                    path = %self.path.display(),
                    "configuration reloaded"
                );
            }
            Err(errors) => {
                for error in errors {
                    tracing::error!(trigger = trigger.as_str(), "{error}");
                }
                tracing::error!(
                    trigger = trigger.as_str(),
                    errors = errors.len(),
                    generation = self.live.generation(),
                    "configuration refused; still serving the previous one"
                );
            }
        }
    }
}

/// Settings a running process cannot change in place, each with the reason.
pub fn restart_only_changes(running: &Config, next: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if running.listeners != next.listeners {
        warnings.push(
            "listener changes (addresses, TLS, names) take effect after a binary upgrade or restart; \
             routes on existing listeners are updated now"
                .to_string(),
        );
    }
    if running.admin != next.admin {
        warnings.push("admin.listen changes take effect after a binary upgrade or restart".into());
    }
    if running.workers != next.workers {
        warnings.push("workers changes take effect after a binary upgrade or restart".into());
    }
    if running.log != next.log {
        warnings.push(
            "log changes (format, access) take effect after a binary upgrade or restart".into(),
        );
    }
    if running.state_dir != next.state_dir {
        warnings.push("state_dir changes take effect after a restart".into());
    }
    warnings
}
