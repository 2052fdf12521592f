//! One certificate's life: wait until it is due (a third of its lifetime left, or inside the
//! CA's ARI window), issue, store and swap it in; on failure keep what is served and retry with
//! exponential backoff, or after the longest backoff at once when retrying cannot help.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{Account, CertificateIdentifier};

use super::{same_names, serving_of, Inner, TaskSpec};
use crate::acme::dns01::DnsSolver;
use crate::acme::issue::{issue, Solver};
use crate::acme::schedule::{
    ari_renewal_time, random_below, renewal_time, retry_wait, MAX_RENEWAL_JITTER,
};
use crate::acme::status::Serving;
use crate::acme::storage::{self, Issued};
use crate::acme::{AcmeError, CaStep};
use crate::cluster::ClusterError;

/// Longest single sleep: plans are re-checked at least this often.
pub const MAX_SLEEP: Duration = Duration::from_secs(12 * 3600);
/// Longest one issuance attempt may take (a CA or DNS API that hangs counts as a failure).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest the ARI look-up may take before the lifetime rule is used instead.
pub const DEFAULT_ARI_TIMEOUT: Duration = Duration::from_secs(30);
/// What the status adds to an error that retrying cannot fix.
pub const PERMANENT_FAILURE_NOTE: &str =
    "not transient: retrying cannot fix this, so the next attempt waits acme.retry_max";

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs until aborted (the certificate left the configuration or changed).
pub async fn run(inner: Arc<Inner>, spec: TaskSpec) {
    let name = spec.cert.name.clone();
    let mut failures: u32 = 0;
    let mut waiting = Waiting::default();
    loop {
        let cluster = inner.cluster();
        if let Some(cluster) = &cluster {
            adopt_shared(&inner, &spec, cluster, &mut waiting.seen_fence).await;
        }
        let now = unix_now();
        let current = inner
            .issued(&name)
            .filter(|issued| issued.meta.not_after > now)
            .filter(|issued| same_names(&issued.meta.domains, &spec.cert.domains));
        let (due, replaces) = match &current {
            Some(issued) => plan(&inner, &spec, issued).await,
            None => (now, None),
        };
        if due > now {
            inner.set_status(&spec, |s| {
                s.serving = Serving::Issued;
                s.next_attempt = Some(due);
                if let Some(issued) = &current {
                    s.not_after = Some(issued.meta.not_after);
                    s.issuer = Some(issued.meta.issuer.clone());
                }
            });
            if !waiting.planned {
                tracing::info!(certificate = %name, renew_at = due, "certificate is valid; renewal planned");
                waiting.planned = true;
            }
            let mut wait = Duration::from_secs((due - now) as u64).min(MAX_SLEEP);
            if let Some(cluster) = &cluster {
                // Another instance may renew first: look for its result now and then.
                wait = wait.min(cluster.settings().sync_interval);
            }
            tokio::time::sleep(wait).await;
            continue;
        }
        waiting.planned = false;
        let result = match &cluster {
            None => {
                inner.set_status(&spec, |s| {
                    s.last_attempt = Some(now);
                    s.next_attempt = None;
                });
                tracing::info!(certificate = %name, domains = ?spec.cert.domains, renewal = current.is_some(), "ordering a certificate");
                attempt_in_time(&inner, &spec, replaces)
                    .await
                    .map(|(issued, key_pem)| {
                        store_locally(&spec, &issued, &key_pem);
                        issued
                    })
            }
            Some(cluster) => match turn(&inner, &spec, cluster, &mut waiting).await {
                Turn::Wait(wait) => {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Turn::Mine(lock) => {
                    let result = issue_under_lock(&inner, &spec, cluster, &lock, replaces).await;
                    cluster.release(&lock).await;
                    match result {
                        Ok(Some(issued)) => Ok(issued),
                        // Someone else's result is in storage now: serve that.
                        Ok(None) => continue,
                        Err(error) => Err(error),
                    }
                }
            },
        };
        match result {
            Ok(issued) => {
                failures = 0;
                if let Some(cluster) = &cluster {
                    if let Err(error) = cluster.clear_backoff(&name).await {
                        tracing::debug!(certificate = %name, %error, "cannot clear the shared backoff");
                    }
                }
                let not_after = issued.meta.not_after;
                let issuer = issued.meta.issuer.clone();
                inner.install(&spec, issued);
                inner.set_status(&spec, |s| {
                    s.serving = Serving::Issued;
                    s.attempts_succeeded += 1;
                    s.consecutive_failures = 0;
                    s.last_error = None;
                    s.not_after = Some(not_after);
                    s.issuer = Some(issuer);
                });
                inner.metrics.order(&name, true);
                tracing::info!(certificate = %name, not_after, "certificate issued and now served");
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if let Some(cluster) = &cluster {
                    // Count failures cluster-wide, so the backoff grows whoever tries next.
                    failures = failures.max(cluster.failures(&name).await.unwrap_or(0) + 1);
                }
                let transient = error.is_transient();
                let delay = retry_wait(
                    &error,
                    failures,
                    spec.acme.retry_min,
                    spec.acme.retry_max,
                    unix_now(),
                );
                if let Some(cluster) = &cluster {
                    if let Err(error) = cluster.set_backoff(&name, failures, delay).await {
                        tracing::debug!(certificate = %name, %error, "cannot share the backoff");
                    }
                }
                let next = unix_now() + delay.as_secs() as i64;
                let serving = serving_of(&inner, &name);
                let last_error = if transient {
                    error.to_string()
                } else {
                    format!("{error} ({PERMANENT_FAILURE_NOTE})")
                };
                inner.set_status(&spec, |s| {
                    s.serving = serving;
                    s.attempts_failed += 1;
                    s.consecutive_failures = failures;
                    s.last_error = Some(last_error);
                    s.next_attempt = Some(next);
                });
                inner.metrics.order(&name, false);
                if transient {
                    tracing::warn!(
                        certificate = %name,
                        failures,
                        retry_in_secs = delay.as_secs(),
                        transient,
                        %error,
                        "certificate issuance failed; keeping the certificate served now and retrying after backoff"
                    );
                } else {
                    tracing::warn!(
                        certificate = %name,
                        failures,
                        retry_in_secs = delay.as_secs(),
                        transient,
                        %error,
                        "certificate issuance failed and retrying cannot fix it; keeping the certificate served now and waiting the longest backoff (acme.retry_max) before the next attempt"
                    );
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// What was last logged while waiting, so each state is logged once, not every sync period.
#[derive(Default)]
struct Waiting {
    planned: bool,
    deferred: bool,
    holder: Option<String>,
    /// Fencing token of the stored certificate last looked at: unchanged means nothing new to
    /// read (one small HGET per sync period instead of the whole chain and key).
    seen_fence: Option<i64>,
}

/// Whose turn it is to order: this instance (holding the lock) or someone else (wait and look
/// again). Redis away → wait: ordering without the lock could order twice.
enum Turn {
    Mine(crate::cluster::IssueLock),
    Wait(Duration),
}

async fn turn(
    inner: &Inner,
    spec: &TaskSpec,
    cluster: &crate::cluster::Cluster,
    waiting: &mut Waiting,
) -> Turn {
    let name = &spec.cert.name;
    let period = cluster.settings().sync_interval;
    let deferred = |inner: &Inner, waiting: &mut Waiting, error: ClusterError| {
        if !waiting.deferred {
            tracing::warn!(certificate = %name, %error, "Redis is unreachable; issuance is deferred until it answers");
            waiting.deferred = true;
        }
        inner.set_status(spec, |s| {
            s.last_error = Some(format!("issuance deferred: Redis is unreachable ({error})"));
            s.next_attempt = None;
        });
        Turn::Wait(period.min(Duration::from_secs(1)))
    };
    match cluster.backoff(name).await {
        Err(error) => return deferred(inner, waiting, error),
        Ok(Some((failures, left))) => {
            tracing::debug!(certificate = %name, failures, left_ms = left.as_millis() as u64, "issuance backs off after a failure");
            return Turn::Wait(left.min(period));
        }
        Ok(None) => {}
    }
    let lock = match cluster.try_lock(name).await {
        Err(error) => return deferred(inner, waiting, error),
        Ok(lock) => lock,
    };
    if waiting.deferred {
        tracing::info!(certificate = %name, "Redis answers again; issuance resumes");
        waiting.deferred = false;
    }
    match lock {
        Some(lock) => {
            waiting.holder = None;
            // The previous holder may have stored its result just before letting go.
            if adopt_shared(inner, spec, cluster, &mut waiting.seen_fence).await {
                cluster.release(&lock).await;
                return Turn::Wait(Duration::ZERO);
            }
            Turn::Mine(lock)
        }
        None => {
            let holder = cluster.holder(name).await.ok().flatten();
            if holder != waiting.holder {
                tracing::info!(certificate = %name, holder = holder.as_deref().unwrap_or("?"), "another instance is issuing this certificate; waiting for its result");
                waiting.holder = holder;
            }
            Turn::Wait(period)
        }
    }
}

/// One attempt while holding the lock, renewing it at a third of its lifetime; stores the result
/// in Redis (fenced) and on disk. `Ok(None)`: the lock was lost and the result thrown away.
async fn issue_under_lock(
    inner: &Inner,
    spec: &TaskSpec,
    cluster: &crate::cluster::Cluster,
    lock: &crate::cluster::IssueLock,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Option<Issued>, AcmeError> {
    let name = &spec.cert.name;
    inner.set_status(spec, |s| {
        s.last_attempt = Some(unix_now());
        s.next_attempt = None;
    });
    tracing::info!(certificate = %name, domains = ?spec.cert.domains, fence = lock.fence, "ordering a certificate (holding the cluster's issuance lock)");
    let ttl = cluster.settings().lock_ttl;
    let keep_lock = async {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(ttl / 3).await;
            match cluster.renew(lock).await {
                Ok(()) => last_renewed = tokio::time::Instant::now(),
                Err(lost @ ClusterError::LockLost { .. }) => return AcmeError::LockLost(lost),
                Err(error) if last_renewed.elapsed() >= ttl => {
                    return AcmeError::Cluster {
                        context: "cannot renew the issuance lock",
                        source: error,
                    };
                }
                Err(_) => {}
            }
        }
    };
    let outcome = tokio::select! {
        result = attempt_in_time(inner, spec, replaces) => result?,
        lost = keep_lock => {
            tracing::warn!(certificate = %name, reason = %lost, "stopping this issuance");
            return Err(lost);
        }
    };
    let (issued, key_pem) = outcome;
    let meta = serde_json::to_string(&issued.meta)?;
    match cluster
        .store_cert(lock, &issued.chain_pem, &key_pem, &meta)
        .await
    {
        Ok(crate::cluster::Stored::Stored) => {
            store_locally(spec, &issued, &key_pem);
            Ok(Some(issued))
        }
        Ok(refused) => {
            tracing::warn!(certificate = %name, ?refused, "another instance took over the issuance; this result is discarded");
            Ok(None)
        }
        Err(error) => Err(AcmeError::Cluster {
            context: "issued, but cannot store the certificate in Redis",
            source: error,
        }),
    }
}

/// Serves the certificate another instance stored, when it differs from what is served and is
/// valid for the configured names. True when it was swapped in.
async fn adopt_shared(
    inner: &Inner,
    spec: &TaskSpec,
    cluster: &crate::cluster::Cluster,
    seen_fence: &mut Option<i64>,
) -> bool {
    let name = &spec.cert.name;
    match cluster.stored_fence(name).await {
        Ok(fence) if fence.is_some() && fence == *seen_fence => return false,
        Ok(_) => {}
        Err(error) => {
            tracing::debug!(certificate = %name, %error, "cannot read the shared certificate");
            return false;
        }
    }
    let shared = match cluster.load_cert(name).await {
        Ok(Some(shared)) => shared,
        Ok(None) => return false,
        Err(error) => {
            tracing::debug!(certificate = %name, %error, "cannot read the shared certificate");
            return false;
        }
    };
    *seen_fence = Some(shared.fence);
    let served = inner.issued(name);
    if served.as_ref().is_some_and(|s| s.chain_pem == shared.chain) {
        return false;
    }
    let mut issued = match storage::parse_issued(&shared.chain, &shared.key, &spec.acme.directory) {
        Ok(issued) => issued,
        Err(error) => {
            tracing::warn!(certificate = %name, %error, "the certificate stored in Redis is unusable; ignoring it");
            return false;
        }
    };
    if let Ok(meta) = serde_json::from_str::<storage::Meta>(&shared.meta) {
        issued.meta.issued_at = meta.issued_at;
    }
    let now = unix_now();
    if issued.meta.not_after <= now || !same_names(&issued.meta.domains, &spec.cert.domains) {
        return false;
    }
    if served
        .as_ref()
        .is_some_and(|s| s.meta.not_after > issued.meta.not_after)
    {
        return false;
    }
    store_locally(spec, &issued, &shared.key);
    let not_after = issued.meta.not_after;
    let issuer = issued.meta.issuer.clone();
    inner.install(spec, issued);
    inner.set_status(spec, |s| {
        s.serving = Serving::Issued;
        s.last_error = None;
        s.not_after = Some(not_after);
        s.issuer = Some(issuer);
    });
    tracing::info!(certificate = %name, not_after, stored_by = %shared.by, "serving the certificate another instance stored");
    true
}

/// Writes a certificate to `state_dir` (so a restart without Redis still has it).
fn store_locally(spec: &TaskSpec, issued: &Issued, key_pem: &str) {
    if let Err(error) = storage::save(&spec.state_dir, &spec.cert.name, issued, key_pem) {
        tracing::error!(certificate = %spec.cert.name, %error, "cannot store the issued certificate; serving it from memory");
    }
}

/// [`attempt`] bounded by [`DEFAULT_ATTEMPT_TIMEOUT`].
async fn attempt_in_time(
    inner: &Inner,
    spec: &TaskSpec,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<(Issued, String), AcmeError> {
    tokio::time::timeout(DEFAULT_ATTEMPT_TIMEOUT, attempt(inner, spec, replaces))
        .await
        .unwrap_or(Err(AcmeError::AttemptTimeout(DEFAULT_ATTEMPT_TIMEOUT)))
}

/// When to renew a valid certificate, and the ARI id to name as replaced when the CA has ARI.
async fn plan(
    inner: &Inner,
    spec: &TaskSpec,
    issued: &Issued,
) -> (i64, Option<CertificateIdentifier<'static>>) {
    let jitter = random_below(MAX_RENEWAL_JITTER.as_secs());
    let fallback = renewal_time(issued.meta.not_before, issued.meta.not_after, jitter);
    let Some(leaf) = issued.key.cert.first() else {
        return (fallback, None);
    };
    let Ok(id) = CertificateIdentifier::try_from(leaf) else {
        return (fallback, None);
    };
    let id = id.into_owned();
    let lookup = async {
        let account = account(inner, spec).await?;
        account
            .renewal_info(&id)
            .await
            .map_err(|e| AcmeError::from_ca(CaStep::RenewalInfo, e))
    };
    match tokio::time::timeout(DEFAULT_ARI_TIMEOUT, lookup).await {
        Ok(Ok((info, _))) => {
            let window = info.suggested_window;
            let (start, end) = (window.start.unix_timestamp(), window.end.unix_timestamp());
            let at = ari_renewal_time(start, end, unix_now(), random_below(u64::MAX));
            tracing::info!(certificate = %spec.cert.name, start, end, "the CA suggested a renewal window (ARI)");
            (at, Some(id))
        }
        // The directory has no renewalInfo: the lifetime rule.
        Ok(Err(AcmeError::Ca { source, .. }))
            if matches!(*source, instant_acme::Error::Unsupported(_)) =>
        {
            (fallback, None)
        }
        Ok(Err(error)) => {
            tracing::debug!(certificate = %spec.cert.name, %error, "ARI look-up failed; using the lifetime rule");
            (fallback, None)
        }
        Err(_) => (fallback, None),
    }
}

/// The account for the spec's directory (cached while the settings stay the same).
async fn account(inner: &Inner, spec: &TaskSpec) -> Result<Account, AcmeError> {
    let mut cached = inner.accounts.lock().await;
    if let Some((acme, dir, account)) = cached.as_ref() {
        if *acme == spec.acme && *dir == spec.state_dir {
            return Ok(account.clone());
        }
    }
    let cluster = inner.cluster();
    let account =
        crate::acme::account::load_or_create(&spec.state_dir, &spec.acme, cluster.as_ref()).await?;
    *cached = Some((spec.acme.clone(), spec.state_dir.clone(), account.clone()));
    Ok(account)
}

/// One issuance attempt: the certificate and its PEM key (the caller stores them).
async fn attempt(
    inner: &Inner,
    spec: &TaskSpec,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<(Issued, String), AcmeError> {
    let account = account(inner, spec).await?;
    let solver = match &spec.provider {
        Some(provider) => Solver::Dns01(Arc::new(DnsSolver::new(
            provider,
            &spec.acme.dns_resolvers,
        )?)),
        None => Solver::Http01(inner.tokens.clone()),
    };
    let mut outcome = issue(
        &account,
        &spec.acme.directory,
        &spec.cert.domains,
        &solver,
        replaces,
        inner.cluster().as_ref(),
    )
    .await?;
    outcome.issued.meta.issued_at = unix_now();
    Ok((outcome.issued, outcome.key_pem))
}
