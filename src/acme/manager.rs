//! The ACME manager: long-lived, one background task per ACME certificate. `apply` takes a
//! (new) configuration, starts, restarts or stops those tasks and rebuilds the SNI index from
//! the file certificates plus what is served for each ACME certificate (stored, issued, or a
//! self-signed placeholder); the tasks swap issued certificates in the same way. Start-up calls
//! `apply` once; a reload calls it again with the new configuration.

mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;

use super::http01::ChallengeTokens;
use super::status::{CertStatus, Serving, StatusTable};
use super::storage::{self, Issued, Stored};
use super::AcmeError;
use crate::config::model::{Acme, AcmeCertificate, Challenge, Config, DnsProvider};
use crate::tls::{build_index, placeholder, CertIndex, CertStore};

/// Everything one certificate's task needs; a change to any of it restarts the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TaskSpec {
    pub cert: AcmeCertificate,
    pub acme: Acme,
    pub provider: Option<DnsProvider>,
    pub state_dir: PathBuf,
}

/// What is served for an ACME certificate's names.
#[derive(Clone)]
pub(super) enum Served {
    Placeholder(Arc<CertifiedKey>),
    Issued(Box<Issued>),
}

impl Served {
    fn key(&self) -> Arc<CertifiedKey> {
        match self {
            Self::Placeholder(key) => key.clone(),
            Self::Issued(issued) => issued.key.clone(),
        }
    }
}

struct Running {
    spec: TaskSpec,
    handle: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    config: Option<Arc<Config>>,
    served: BTreeMap<String, Served>,
    tasks: BTreeMap<String, Running>,
}

/// State shared by the manager and its tasks.
pub(super) struct Inner {
    state: Mutex<State>,
    certs: Arc<CertStore>,
    pub tokens: Arc<ChallengeTokens>,
    pub status: Arc<StatusTable>,
    pub accounts: tokio::sync::Mutex<Option<(Acme, PathBuf, instant_acme::Account)>>,
}

/// The ACME manager (see the module docs).
pub struct AcmeManager {
    inner: Arc<Inner>,
    /// Always `Some` until dropped (taken to shut it down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
}

impl AcmeManager {
    /// A manager with its own small runtime; nothing runs until [`AcmeManager::apply`].
    pub fn new(certs: Arc<CertStore>, tokens: Arc<ChallengeTokens>) -> Result<Self, AcmeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferrogate-acme")
            .enable_all()
            .build()
            .map_err(AcmeError::Runtime)?;
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                certs,
                tokens,
                status: Arc::new(StatusTable::default()),
                accounts: tokio::sync::Mutex::new(None),
            }),
            runtime: Some(runtime),
        })
    }

    /// Per-certificate status, for `/status` and metrics.
    pub fn status(&self) -> Arc<StatusTable> {
        self.inner.status.clone()
    }

    /// Makes `config` current: stops tasks of certificates that left it, (re)starts those that
    /// are new or changed, and swaps in the SNI index rebuilt for it. Certificates already served
    /// keep being served until a new one replaces them. On error nothing has changed.
    pub fn apply(&self, config: &Config) -> Result<(), AcmeError> {
        let config = Arc::new(config.clone());
        let Some(runtime) = &self.runtime else {
            return Err(AcmeError::Stopped);
        };
        let mut state = self.inner.lock();
        let wanted: BTreeMap<String, TaskSpec> = config
            .tls
            .acme
            .iter()
            .map(|cert| (cert.name.clone(), spec_for(&config, cert)))
            .collect();

        // Everything that can fail first, on copies.
        let mut served = state.served.clone();
        served.retain(|name, _| wanted.contains_key(name));
        let mut to_start = Vec::new();
        for (name, spec) in &wanted {
            if state.tasks.get(name).is_some_and(|r| r.spec == *spec) {
                continue;
            }
            let keep = match served.get(name) {
                Some(Served::Issued(issued)) => {
                    same_names(&issued.meta.domains, &spec.cert.domains)
                }
                Some(Served::Placeholder(_)) | None => false,
            };
            if !keep {
                served.insert(name.clone(), initial(spec)?);
            }
            to_start.push((name.clone(), spec.clone()));
        }
        let index = index_for(&config, &served)?;

        // Then commit.
        let gone: Vec<String> = state
            .tasks
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(running) = state.tasks.remove(&name) {
                running.handle.abort();
            }
            self.inner.status.remove(&name);
            tracing::info!(certificate = %name, "ACME certificate removed from the configuration");
        }
        for (name, spec) in to_start {
            if let Some(old) = state.tasks.remove(&name) {
                old.handle.abort();
                tracing::info!(certificate = %name, "ACME certificate changed; restarting its task");
            }
            let handle = runtime.spawn(task::run(self.inner.clone(), spec.clone()));
            state.tasks.insert(name, Running { spec, handle });
        }
        state.served = served;
        state.config = Some(config);
        self.inner.certs.replace(index);
        Ok(())
    }
}

impl Drop for AcmeManager {
    /// Stops every task; safe from inside an async context too.
    fn drop(&mut self) {
        for running in self.inner.lock().tasks.values() {
            running.handle.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Inner {
    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    fn swap_index(&self, state: &State) -> Result<(), AcmeError> {
        let Some(config) = &state.config else {
            return Ok(());
        };
        self.certs.replace(index_for(config, &state.served)?);
        Ok(())
    }

    /// The issued certificate served for `name`, if any.
    pub(super) fn issued(&self, name: &str) -> Option<Issued> {
        match self.lock().served.get(name) {
            Some(Served::Issued(issued)) => Some((**issued).clone()),
            _ => None,
        }
    }

    /// Serves a newly issued certificate, only while `spec` is still the configured one (a task
    /// stopped by `apply` while it waited for the lock must not bring its certificate back).
    pub(super) fn install(&self, spec: &TaskSpec, issued: Issued) -> Result<(), AcmeError> {
        let mut state = self.lock();
        if !state
            .tasks
            .get(&spec.cert.name)
            .is_some_and(|r| r.spec == *spec)
        {
            return Ok(());
        }
        state
            .served
            .insert(spec.cert.name.clone(), Served::Issued(Box::new(issued)));
        self.swap_index(&state)
    }

    /// Updates and persists a certificate's status.
    pub(super) fn set_status(&self, spec: &TaskSpec, change: impl FnOnce(&mut CertStatus)) {
        let status = self
            .status
            .update(&spec.cert.name, &spec.cert.domains, change);
        storage::save_status(&spec.state_dir, &status);
        crate::observe::board::publish_certificate(board_entry(&status));
    }
}

/// How the status page and the expiry metric show an ACME certificate.
fn board_entry(status: &CertStatus) -> crate::observe::board::CertificateInfo {
    let serving = match status.serving {
        Serving::Issued => "acme",
        Serving::Placeholder => "acme (self-signed placeholder until issued)",
    };
    crate::observe::board::CertificateInfo {
        name: status.name.clone(),
        domains: status.domains.clone(),
        not_after: status.not_after.unwrap_or(0),
        source: serving.to_string(),
        renewal: status
            .next_attempt
            .map(|at| format!("next attempt at {}", super::report::format_time(at))),
        last_error: status.last_error.clone(),
    }
}

/// The SNI index for `config` with `served` for its ACME certificates.
fn index_for(config: &Config, served: &BTreeMap<String, Served>) -> Result<CertIndex, AcmeError> {
    let keys: BTreeMap<String, Arc<CertifiedKey>> = served
        .iter()
        .map(|(name, served)| (name.clone(), served.key()))
        .collect();
    build_index(config, &keys).map_err(AcmeError::Serving)
}

fn spec_for(config: &Config, cert: &AcmeCertificate) -> TaskSpec {
    let provider = match &cert.challenge {
        Challenge::Dns01 { provider } => config.acme.dns_providers.get(provider).cloned(),
        Challenge::Http01 => None,
    };
    // The position in the file only orders the index; it does not restart the task.
    let mut cert = cert.clone();
    cert.index = 0;
    TaskSpec {
        cert,
        acme: config.acme.clone(),
        provider,
        state_dir: config.state_dir.clone(),
    }
}

/// Same set of names, in any order.
pub(super) fn same_names(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    b.sort();
    a == b
}

/// What to serve before the task has run: the stored certificate if it is still valid, else a
/// placeholder. A corrupt store is reported and issued again.
fn initial(spec: &TaskSpec) -> Result<Served, AcmeError> {
    let name = &spec.cert.name;
    let now = task::unix_now();
    match storage::load(&spec.state_dir, name) {
        Stored::Found(issued) if issued.meta.not_after > now => {
            tracing::info!(certificate = %name, not_after = issued.meta.not_after, "serving the stored certificate");
            return Ok(Served::Issued(issued));
        }
        Stored::Found(_) => {
            tracing::warn!(certificate = %name, "stored certificate has expired; issuing a new one");
        }
        Stored::Corrupt(error) => {
            tracing::warn!(certificate = %name, %error, "stored certificate is unusable; issuing a new one");
        }
        Stored::Missing => {}
    }
    tracing::info!(certificate = %name, "serving a self-signed placeholder until the CA issues the certificate");
    let key = placeholder::for_names(&spec.cert.domains).map_err(AcmeError::Serving)?;
    Ok(Served::Placeholder(key))
}

/// The serving kind, for status.
pub(super) fn serving_of(inner: &Inner, name: &str) -> Serving {
    match inner.lock().served.get(name) {
        Some(Served::Issued(_)) => Serving::Issued,
        _ => Serving::Placeholder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_as_sets() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_names(&names(&["a", "*.a"]), &names(&["*.a", "a"])));
        assert!(!same_names(&names(&["a"]), &names(&["a", "b"])));
        assert!(!same_names(&names(&["a", "c"]), &names(&["a", "b"])));
    }
}
