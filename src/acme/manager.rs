//! The ACME manager: long-lived, one background task per ACME certificate. A configuration is
//! first prepared ([`AcmeManager::prepare`]: what each certificate serves first, which tasks
//! start, restart or stop, the SNI index from the file certificates plus what is served for each
//! ACME certificate (stored, issued, or a self-signed placeholder); nothing changes, it may
//! fail), then committed ([`AcmeManager::commit`]: tasks started and stopped, the index swapped
//! in; cannot fail). The tasks swap issued certificates in the same way.

mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;

use super::http01::ChallengeTokens;
use super::metrics::AcmeMetrics;
use super::status::{CertStatus, Serving, StatusTable};
use super::storage::{self, Issued, Stored};
use super::AcmeError;
use crate::cluster::Cluster;
use crate::config::model::{Acme, AcmeCertificate, Challenge, Config, DnsProvider};
use crate::observe::board::{CertificateInfo, StatusBoard};
use crate::tls::build::{fallback_for, index_with};
use crate::tls::metrics::CertMetrics;
use crate::tls::{placeholder, CertStore};

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
    /// The certificate of last resort of the configuration in force.
    fallback: Option<Arc<CertifiedKey>>,
    served: BTreeMap<String, Served>,
    tasks: BTreeMap<String, Running>,
    /// Changes with every certificate a task installs.
    installs: u64,
}

/// Where the manager reports: the status board, the certificate and ACME families.
#[derive(Clone)]
pub struct AcmeReporting {
    pub board: Arc<StatusBoard>,
    pub certificates: Arc<CertMetrics>,
    pub metrics: AcmeMetrics,
}

impl AcmeReporting {
    /// Reporting to a board and metrics registry of its own, seen by nobody (tools, tests).
    pub fn standalone() -> Result<Self, String> {
        let define = |e: prometheus::Error| format!("cannot define the metrics: {e}");
        let metrics = crate::observe::Metrics::new().map_err(define)?;
        Ok(Self {
            board: Arc::new(StatusBoard::default()),
            certificates: CertMetrics::register(&metrics).map_err(define)?,
            metrics: AcmeMetrics::register(&metrics).map_err(define)?,
        })
    }
}

/// State shared by the manager and its tasks.
pub(super) struct Inner {
    state: Mutex<State>,
    certs: Arc<CertStore>,
    pub tokens: Arc<ChallengeTokens>,
    pub status: Arc<StatusTable>,
    pub accounts: tokio::sync::Mutex<Option<(Acme, PathBuf, instant_acme::Account)>>,
    /// The cluster of the configuration in force.
    cluster: ArcSwapOption<Cluster>,
    board: Arc<StatusBoard>,
    certificates: Arc<CertMetrics>,
    pub metrics: AcmeMetrics,
}

/// A configuration's certificates, prepared: nothing is in force until
/// [`AcmeManager::commit`].
pub struct CertPlan {
    config: Arc<Config>,
    fallback: Option<Arc<CertifiedKey>>,
    served: BTreeMap<String, Served>,
    to_start: Vec<(String, TaskSpec)>,
    /// The installs count the plan was made at.
    installs: u64,
}

/// The ACME manager (see the module docs).
pub struct AcmeManager {
    inner: Arc<Inner>,
    /// Always `Some` until dropped (taken to shut it down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
}

impl AcmeManager {
    /// A manager with its own small runtime; nothing runs until [`AcmeManager::apply`].
    pub fn new(
        certs: Arc<CertStore>,
        tokens: Arc<ChallengeTokens>,
        reporting: AcmeReporting,
    ) -> Result<Self, AcmeError> {
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
                cluster: ArcSwapOption::empty(),
                board: reporting.board,
                certificates: reporting.certificates,
                metrics: reporting.metrics,
            }),
            runtime: Some(runtime),
        })
    }

    /// The cluster of the configuration in force, as last committed.
    pub fn cluster(&self) -> Option<Arc<Cluster>> {
        self.inner.cluster()
    }

    /// Per-certificate status, for `/status` and metrics.
    pub fn status(&self) -> Arc<StatusTable> {
        self.inner.status.clone()
    }

    /// Prepares `config`'s certificates: what each new or changed ACME certificate serves first
    /// (its stored certificate, else a self-signed placeholder) and the fallback certificate.
    /// Certificates already served keep being served until a new one replaces them. Changes
    /// nothing; on error nothing is prepared.
    pub fn prepare(&self, config: &Config) -> Result<CertPlan, AcmeError> {
        let config = Arc::new(config.clone());
        if self.runtime.is_none() {
            return Err(AcmeError::Stopped);
        }
        let state = self.inner.lock();
        let wanted: BTreeMap<String, TaskSpec> = config
            .tls
            .acme
            .iter()
            .map(|cert| (cert.name.clone(), spec_for(&config, cert)))
            .collect();
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
        let fallback = fallback_for(&config, &keys_of(&served)).map_err(AcmeError::Serving)?;
        Ok(CertPlan {
            config,
            fallback,
            served,
            to_start,
            installs: state.installs,
        })
    }

    /// Puts a prepared plan in force: stops tasks of certificates that left the configuration,
    /// (re)starts those that are new or changed, and swaps in the SNI index. A certificate a task
    /// installed since the plan was made stays served. Cannot fail.
    pub fn commit(&self, plan: CertPlan, cluster: Option<Arc<Cluster>>) {
        self.inner.cluster.store(cluster);
        let mut state = self.inner.lock();
        let CertPlan {
            config,
            fallback,
            mut served,
            to_start,
            installs,
        } = plan;
        if state.installs != installs {
            // A task installed a certificate meanwhile: keep it where its task goes on.
            for (name, now) in &state.served {
                let restarted = to_start.iter().any(|(n, _)| n == name);
                if !restarted && served.contains_key(name) {
                    served.insert(name.clone(), now.clone());
                }
            }
        }
        let gone: Vec<String> = state
            .tasks
            .keys()
            .filter(|name| !config.tls.acme.iter().any(|c| c.name == **name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(running) = state.tasks.remove(&name) {
                running.handle.abort();
            }
            self.inner.status.remove(&name);
            tracing::info!(certificate = %name, "ACME certificate removed from the configuration");
        }
        if let Some(runtime) = &self.runtime {
            for (name, spec) in to_start {
                if let Some(old) = state.tasks.remove(&name) {
                    old.handle.abort();
                    tracing::info!(certificate = %name, "ACME certificate changed; restarting its task");
                }
                let handle = runtime.spawn(task::run(self.inner.clone(), spec.clone()));
                state.tasks.insert(name, Running { spec, handle });
            }
        }
        state.served = served;
        state.fallback = fallback;
        state.config = Some(config);
        self.inner.swap_index(&state);
    }

    /// [`Self::prepare`] then [`Self::commit`] (start-up and tests).
    pub fn apply(&self, config: &Config, cluster: Option<Arc<Cluster>>) -> Result<(), AcmeError> {
        let plan = self.prepare(config)?;
        self.commit(plan, cluster);
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

    /// The cluster of the configuration in force.
    pub(super) fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster.load_full()
    }

    fn swap_index(&self, state: &State) {
        let Some(config) = &state.config else {
            return;
        };
        let index = index_with(config, &keys_of(&state.served), state.fallback.clone());
        self.certs.replace(index);
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
    pub(super) fn install(&self, spec: &TaskSpec, issued: Issued) {
        let mut state = self.lock();
        if !state
            .tasks
            .get(&spec.cert.name)
            .is_some_and(|r| r.spec == *spec)
        {
            return;
        }
        state
            .served
            .insert(spec.cert.name.clone(), Served::Issued(Box::new(issued)));
        state.installs += 1;
        self.swap_index(&state);
    }

    /// Updates and persists a certificate's status.
    pub(super) fn set_status(&self, spec: &TaskSpec, change: impl FnOnce(&mut CertStatus)) {
        let status = self
            .status
            .update(&spec.cert.name, &spec.cert.domains, change);
        storage::save_status(&spec.state_dir, &status);
        let entry = board_entry(&status);
        self.certificates.expiry(&entry.name, entry.not_after);
        self.board.publish_certificate(entry);
    }
}

/// How the status page and the expiry metric show an ACME certificate.
fn board_entry(status: &CertStatus) -> CertificateInfo {
    let serving = match status.serving {
        Serving::Issued => "acme",
        Serving::Placeholder => "acme (self-signed placeholder until issued)",
    };
    CertificateInfo {
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

/// What is served for each ACME certificate, as keys.
fn keys_of(served: &BTreeMap<String, Served>) -> BTreeMap<String, Arc<CertifiedKey>> {
    served
        .iter()
        .map(|(name, served)| (name.clone(), served.key()))
        .collect()
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
