//! One certificate's life: wait until it is due (a third of its lifetime left, or inside the
//! CA's ARI window), issue, store and swap it in; on failure keep what is served and retry with
//! exponential backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{Account, CertificateIdentifier};

use super::{same_names, serving_of, Inner, TaskSpec};
use crate::acme::dns01::DnsSolver;
use crate::acme::issue::{issue, Solver};
use crate::acme::schedule::{
    ari_renewal_time, backoff, random_below, renewal_time, MAX_RENEWAL_JITTER,
};
use crate::acme::status::Serving;
use crate::acme::storage::{self, Issued};

/// Longest single sleep: plans are re-checked at least this often.
pub const MAX_SLEEP: Duration = Duration::from_secs(12 * 3600);
/// Longest one issuance attempt may take (a CA or DNS API that hangs counts as a failure).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest the ARI look-up may take before the lifetime rule is used instead.
pub const DEFAULT_ARI_TIMEOUT: Duration = Duration::from_secs(30);

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
    loop {
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
            tracing::info!(certificate = %name, renew_at = due, "certificate is valid; renewal planned");
            let wait = Duration::from_secs((due - now) as u64).min(MAX_SLEEP);
            tokio::time::sleep(wait).await;
            continue;
        }
        inner.set_status(&spec, |s| {
            s.last_attempt = Some(now);
            s.next_attempt = None;
        });
        tracing::info!(certificate = %name, domains = ?spec.cert.domains, renewal = current.is_some(), "ordering a certificate");
        let result =
            tokio::time::timeout(DEFAULT_ATTEMPT_TIMEOUT, attempt(&inner, &spec, replaces))
                .await
                .unwrap_or_else(|_| Err(format!("no result within {DEFAULT_ATTEMPT_TIMEOUT:?}")));
        match result {
            Ok(issued) => {
                failures = 0;
                let not_after = issued.meta.not_after;
                let issuer = issued.meta.issuer.clone();
                if let Err(error) = inner.install(&spec, issued) {
                    tracing::error!(certificate = %name, %error, "cannot swap in the new certificate");
                }
                inner.set_status(&spec, |s| {
                    s.serving = Serving::Issued;
                    s.attempts_succeeded += 1;
                    s.consecutive_failures = 0;
                    s.last_error = None;
                    s.not_after = Some(not_after);
                    s.issuer = Some(issuer);
                });
                crate::observe::metrics::acme_result(&name, true);
                tracing::info!(certificate = %name, not_after, "certificate issued and now served");
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = backoff(failures, spec.acme.retry_min, spec.acme.retry_max);
                let next = unix_now() + delay.as_secs() as i64;
                let serving = serving_of(&inner, &name);
                inner.set_status(&spec, |s| {
                    s.serving = serving;
                    s.attempts_failed += 1;
                    s.consecutive_failures = failures;
                    s.last_error = Some(error.clone());
                    s.next_attempt = Some(next);
                });
                crate::observe::metrics::acme_result(&name, false);
                tracing::warn!(
                    certificate = %name,
                    failures,
                    retry_in_secs = delay.as_secs(),
                    %error,
                    "certificate issuance failed; keeping the certificate served now and retrying after backoff"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
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
        account.renewal_info(&id).await.map_err(|e| match e {
            instant_acme::Error::Unsupported(_) => String::new(),
            other => other.to_string(),
        })
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
        Ok(Err(error)) if error.is_empty() => (fallback, None),
        Ok(Err(error)) => {
            tracing::debug!(certificate = %spec.cert.name, %error, "ARI look-up failed; using the lifetime rule");
            (fallback, None)
        }
        Err(_) => (fallback, None),
    }
}

/// The account for the spec's directory (cached while the settings stay the same).
async fn account(inner: &Inner, spec: &TaskSpec) -> Result<Account, String> {
    let mut cached = inner.accounts.lock().await;
    if let Some((acme, dir, account)) = cached.as_ref() {
        if *acme == spec.acme && *dir == spec.state_dir {
            return Ok(account.clone());
        }
    }
    let account = crate::acme::account::load_or_create(&spec.state_dir, &spec.acme).await?;
    *cached = Some((spec.acme.clone(), spec.state_dir.clone(), account.clone()));
    Ok(account)
}

/// One issuance attempt, stored on success.
async fn attempt(
    inner: &Inner,
    spec: &TaskSpec,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Issued, String> {
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
    )
    .await?;
    outcome.issued.meta.issued_at = unix_now();
    if let Err(error) = storage::save(
        &spec.state_dir,
        &spec.cert.name,
        &outcome.issued,
        &outcome.key_pem,
    ) {
        tracing::error!(certificate = %spec.cert.name, %error, "cannot store the issued certificate; serving it from memory");
    }
    Ok(outcome.issued)
}
