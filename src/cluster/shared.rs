//! What instances share through Redis: stored certificates written only under the issuance lock
//! (checked against its fencing token in the same script), the lock itself, a shared backoff after
//! failed issuance, the ACME account, HTTP-01 tokens, rate-limit buckets and quota counters.

use std::collections::HashMap;
use std::time::Duration;

use super::scripts::{ACQUIRE, ADD_TOKENS, READ_TOKENS, RELEASE, RENEW, STORE_CERT, TAKE_TOKEN};
use super::{Cluster, ClusterError};

/// How long a published HTTP-01 token stays in Redis at most (it is withdrawn after validation).
const TOKEN_TTL_SECS: u64 = 600;

/// A held issuance lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueLock {
    pub name: String,
    /// `member-id#random`: who holds it, unique per acquisition.
    value: String,
    /// Fencing token: grows with each acquisition; a store with a lower one is refused.
    pub fence: i64,
}

/// A certificate as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCert {
    pub chain: String,
    pub key: String,
    /// The JSON of [`crate::acme::storage::Meta`].
    pub meta: String,
    pub fence: i64,
    /// Member id of the instance that stored it.
    pub by: String,
}

/// What storing under the lock did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    /// The lock expired and may be someone else's: nothing written.
    LockLost,
    /// A holder with a later fencing token stored already: nothing written.
    Superseded,
}

/// The member id in a lock value.
pub fn holder_of(value: &str) -> &str {
    value.split('#').next().unwrap_or(value)
}

impl Cluster {
    fn millis(duration: Duration) -> String {
        duration.as_millis().max(1).to_string()
    }

    /// The certificate stored for `name`, if any.
    pub async fn load_cert(&self, name: &str) -> Result<Option<SharedCert>, ClusterError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.inner.keys.cert(name));
        let mut fields: HashMap<String, String> = self.inner.link.query(&cmd, false).await?;
        let (Some(chain), Some(key)) = (fields.remove("chain"), fields.remove("key")) else {
            return Ok(None);
        };
        Ok(Some(SharedCert {
            chain,
            key,
            meta: fields.remove("meta").unwrap_or_default(),
            fence: fields
                .get("fence")
                .and_then(|f| f.parse().ok())
                .unwrap_or(0),
            by: fields.remove("by").unwrap_or_default(),
        }))
    }

    /// The fencing token the stored certificate was written with (`None`: nothing stored).
    pub async fn stored_fence(&self, name: &str) -> Result<Option<i64>, ClusterError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.inner.keys.cert(name)).arg("fence");
        self.inner.link.query(&cmd, false).await
    }

    /// Takes `name`'s issuance lock if it is free.
    pub async fn try_lock(&self, name: &str) -> Result<Option<IssueLock>, ClusterError> {
        let value = format!("{}#{:016x}", self.inner.id, fastrand::u64(..));
        let ttl = Self::millis(self.inner.settings.lock_ttl);
        let keys = [
            self.inner.keys.cert_lock(name),
            self.inner.keys.cert_fence(name),
        ];
        let fence: i64 = self
            .inner
            .link
            .eval(&ACQUIRE, &[&keys[0], &keys[1]], &[&value, &ttl], false)
            .await?;
        Ok((fence > 0).then(|| IssueLock {
            name: name.to_string(),
            value,
            fence,
        }))
    }

    /// Extends the lock; [`ClusterError::LockLost`] when it is no longer this holder's.
    pub async fn renew(&self, lock: &IssueLock) -> Result<(), ClusterError> {
        let ttl = Self::millis(self.inner.settings.lock_ttl);
        let key = self.inner.keys.cert_lock(&lock.name);
        let held: i64 = self
            .inner
            .link
            .eval(&RENEW, &[&key], &[&lock.value, &ttl], false)
            .await?;
        if held == 1 {
            Ok(())
        } else {
            Err(ClusterError::LockLost {
                certificate: lock.name.clone(),
            })
        }
    }

    /// Gives the lock back (only if still this holder's); failures only logged, it expires anyway.
    pub async fn release(&self, lock: &IssueLock) {
        let key = self.inner.keys.cert_lock(&lock.name);
        let result: Result<i64, ClusterError> = self
            .inner
            .link
            .eval(&RELEASE, &[&key], &[&lock.value], false)
            .await;
        if let Err(error) = result {
            tracing::debug!(certificate = %lock.name, %error, "cannot release the issuance lock; it expires by itself");
        }
    }

    /// The member id holding `name`'s lock.
    pub async fn holder(&self, name: &str) -> Result<Option<String>, ClusterError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.inner.keys.cert_lock(name));
        let value: Option<String> = self.inner.link.query(&cmd, false).await?;
        Ok(value.map(|v| holder_of(&v).to_string()))
    }

    /// Stores an issued certificate, only while `lock` is still held and no later holder stored.
    pub async fn store_cert(
        &self,
        lock: &IssueLock,
        chain: &str,
        key: &str,
        meta: &str,
    ) -> Result<Stored, ClusterError> {
        let keys = [
            self.inner.keys.cert_lock(&lock.name),
            self.inner.keys.cert(&lock.name),
        ];
        let fence = lock.fence.to_string();
        let outcome: i64 = self
            .inner
            .link
            .eval(
                &STORE_CERT,
                &[&keys[0], &keys[1]],
                &[&lock.value, &fence, chain, key, meta, &self.inner.id],
                false,
            )
            .await?;
        Ok(match outcome {
            1 => Stored::Stored,
            -1 => Stored::Superseded,
            _ => Stored::LockLost,
        })
    }

    /// Failures so far and the time left, while `name`'s issuance backs off cluster-wide.
    pub async fn backoff(&self, name: &str) -> Result<Option<(u32, Duration)>, ClusterError> {
        let key = self.inner.keys.cert_backoff(name);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        let (failures, left): (Option<u32>, i64) = self.inner.link.pipeline(&pipe).await?;
        Ok(match failures {
            Some(failures) if left > 0 => Some((failures, Duration::from_millis(left as u64))),
            _ => None,
        })
    }

    /// Failures counted cluster-wide (kept after the wait ends, until a success clears them).
    pub async fn failures(&self, name: &str) -> Result<u32, ClusterError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.inner.keys.cert_failures(name));
        let count: Option<u32> = self.inner.link.query(&cmd, false).await?;
        Ok(count.unwrap_or(0))
    }

    /// Makes every instance wait `delay` before ordering `name` again.
    pub async fn set_backoff(
        &self,
        name: &str,
        failures: u32,
        delay: Duration,
    ) -> Result<(), ClusterError> {
        let key = self.inner.keys.cert_backoff(name);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(failures)
            .arg("PX")
            .arg(Self::millis(delay))
            .ignore()
            .cmd("SET")
            .arg(self.inner.keys.cert_failures(name))
            .arg(failures)
            .arg("EX")
            .arg(7 * 24 * 3600)
            .ignore();
        self.inner.link.pipeline::<()>(&pipe).await
    }

    /// Forgets the failures after a success.
    pub async fn clear_backoff(&self, name: &str) -> Result<(), ClusterError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.inner.keys.cert_backoff(name))
            .arg(self.inner.keys.cert_failures(name));
        self.inner.link.query::<()>(&cmd, false).await
    }

    /// The ACME account credentials (JSON) stored for a directory.
    pub async fn load_account(&self, directory: &str) -> Result<Option<String>, ClusterError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.inner.keys.account(directory));
        self.inner.link.query(&cmd, false).await
    }

    /// Stores account credentials unless some are there already; returns the ones in force.
    pub async fn store_account(&self, directory: &str, json: &str) -> Result<String, ClusterError> {
        let key = self.inner.keys.account(directory);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(json).arg("NX");
        let stored: Option<String> = self.inner.link.query(&set, false).await?;
        if stored.is_some() {
            return Ok(json.to_string());
        }
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let existing: Option<String> = self.inner.link.query(&get, false).await?;
        Ok(existing.unwrap_or_else(|| json.to_string()))
    }

    /// Publishes an HTTP-01 token so every instance can answer it.
    pub async fn publish_token(
        &self,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), ClusterError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.inner.keys.http01(token))
            .arg(key_authorization)
            .arg("EX")
            .arg(TOKEN_TTL_SECS);
        self.inner.link.query::<()>(&cmd, false).await
    }

    /// Withdraws a token (best effort: it expires anyway).
    pub async fn withdraw_token(&self, token: &str) {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.inner.keys.http01(token));
        if let Err(error) = self.inner.link.query::<()>(&cmd, false).await {
            tracing::debug!(%error, "cannot withdraw an HTTP-01 token from Redis; it expires by itself");
        }
    }

    /// A token another instance published.
    pub async fn token(&self, token: &str) -> Result<Option<String>, ClusterError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.inner.keys.http01(token));
        self.inner.link.query(&cmd, true).await
    }

    /// Takes a token from a shared bucket: `Some(Ok)` taken, `Some(Err(seconds))` empty, `None`
    /// when Redis cannot answer now (the caller counts locally).
    pub async fn take(
        &self,
        route: &str,
        settings: &str,
        key: &[u8; 32],
        per_second: f64,
        burst: u32,
    ) -> Option<Result<(), u64>> {
        let bucket = self.inner.keys.rate(route, settings, key);
        let rate = format!("{:.17e}", per_second / 1000.0);
        let burst = burst.to_string();
        let wait_ms: Result<i64, ClusterError> = self
            .inner
            .link
            .eval(&TAKE_TOKEN, &[&bucket], &[&rate, &burst], true)
            .await;
        match wait_ms {
            Ok(0) => Some(Ok(())),
            Ok(ms) => Some(Err((ms.max(1) as u64).div_ceil(1000))),
            Err(_) => None,
        }
    }

    /// Tokens `key` used in its current quota window and the time left in it; `None` when Redis
    /// cannot answer now.
    pub async fn quota_used(
        &self,
        route: &str,
        settings: &str,
        key: &[u8; 32],
    ) -> Option<(u64, Duration)> {
        let counter = self.inner.keys.quota(route, settings, key);
        let read: Result<(u64, u64), ClusterError> = self
            .inner
            .link
            .eval(&READ_TOKENS, &[&counter], &[], true)
            .await;
        read.ok()
            .map(|(used, left)| (used, Duration::from_millis(left)))
    }

    /// Adds to `key`'s quota count (a new window of `per` when none is running).
    pub async fn quota_add(
        &self,
        route: &str,
        settings: &str,
        key: &[u8; 32],
        tokens: u64,
        per: Duration,
    ) -> Result<u64, ClusterError> {
        let counter = self.inner.keys.quota(route, settings, key);
        let tokens = tokens.to_string();
        let per = Self::millis(per);
        self.inner
            .link
            .eval(&ADD_TOKENS, &[&counter], &[&tokens, &per], false)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_values_name_their_holder() {
        assert_eq!(
            holder_of("edge-1/42-abcdef#0123456789abcdef"),
            "edge-1/42-abcdef"
        );
        assert_eq!(holder_of("plain"), "plain");
    }
}
