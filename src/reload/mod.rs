//! Configuration reload: read → validate → compile a complete new snapshot → one swap. A bad file
//! leaves the running snapshot in place and is reported with file:line:column. Triggers (SIGHUP,
//! file changes, `POST /reload`) all end in [`Reloader::reload`].

pub mod signals;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::{self, model::Config};
use crate::pool::Registry;
use crate::runtime::{Snapshot, SnapshotStore};

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

/// Builds the certificate index for a configuration and swaps it in, or changes nothing and says
/// why. The ACME manager does both (`AcmeManager::apply`): it also swaps in certificates it
/// issues later, so only it may replace the index, never with one built before its last swap.
pub type CertInstaller = dyn Fn(&Config) -> Result<(), String> + Send + Sync;

/// Performs reloads; shared by every trigger.
pub struct Reloader {
    path: PathBuf,
    snapshots: Arc<SnapshotStore>,
    install_certs: Arc<CertInstaller>,
    /// Upstream pools (health, in-flight, sticky tables) a new snapshot re-attaches to.
    upstreams: Arc<Registry>,
    /// The configuration the process started with: what cannot change without a restart.
    started_with: Config,
    generation: AtomicU64,
    /// One reload at a time.
    serial: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// `started_with` is the configuration that produced generation 1.
    pub fn new(
        path: &Path,
        started_with: Config,
        snapshots: Arc<SnapshotStore>,
        install_certs: Arc<CertInstaller>,
        upstreams: Arc<Registry>,
    ) -> Self {
        let generation = snapshots.load().generation;
        Self {
            path: path.to_path_buf(),
            snapshots,
            install_certs,
            upstreams,
            started_with,
            generation: AtomicU64::new(generation),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads the configuration file. On success returns the new generation; on failure returns
    /// every error (one per line) and leaves the running configuration untouched.
    pub async fn reload(&self, trigger: Trigger) -> Result<u64, Vec<String>> {
        let _one_at_a_time = self.serial.lock().await;
        let path = self.path.clone();
        let install_certs = self.install_certs.clone();
        // Loading resolves upstream names and reads certificate files: blocking work, kept off
        // the async workers.
        let prepared = tokio::task::spawn_blocking(move || {
            let config = config::load(&path)
                .map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
            // Certificates first: a route that appears with this generation finds its
            // certificate.
            install_certs(&config).map_err(|e| vec![e])?;
            Ok::<_, Vec<String>>(config)
        })
        .await
        .map_err(|e| vec![format!("reload task failed: {e}")])
        .and_then(|prepared| prepared);
        let result = match prepared {
            Ok(config) => Ok(self.apply(&config)),
            Err(errors) => Err(errors),
        };
        self.record(trigger, &result);
        result
    }

    /// Installs a validated configuration: compile, then swap.
    fn apply(&self, config: &Config) -> u64 {
        for warning in restart_only_changes(&self.started_with, config) {
            tracing::warn!("{warning}");
        }
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let snapshot = Snapshot::compile(config, generation, &self.upstreams);
        self.snapshots.swap(snapshot);
        self.generation.store(generation, Ordering::SeqCst);
        crate::observe::board::config_loaded(config, generation);
        generation
    }

    /// Logs the outcome and hands it to the status board and metrics (the one record of it).
    fn record(&self, trigger: Trigger, result: &Result<u64, Vec<String>>) {
        crate::observe::board::reload_finished(trigger.as_str(), result);
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
                    generation = self.generation.load(Ordering::SeqCst),
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
