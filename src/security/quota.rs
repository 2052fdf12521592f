//! Token quotas per API key (`api_keys.quota: { tokens, per }`): each key may spend `tokens`
//! (OpenAI's `usage.total_tokens`) per window of `per`, the window starting at the key's first
//! counted request. A key that reached its quota is refused (429, `insufficient_quota`) until its
//! window ends. Counting happens when a response ends: [`Meter`] reads the usage from a JSON body
//! or from the SSE event that carries `"usage"` (streams with `stream_options.include_usage`).
//! Tables are long-lived by route name ([`super::tables`]), so a reload that keeps the quota
//! keeps the counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::config::model::TokenQuota;
use crate::inference::usage::{Usage, UsageReader};
use parking_lot::Mutex;

/// The token counts of one route's keys.
#[derive(Debug)]
pub struct QuotaTable {
    quota: TokenQuota,
    /// The route, and the quota's settings, naming the shared counters in a cluster.
    route: Arc<str>,
    tag: String,
    /// key digest → (window start, tokens used in it).
    used: Mutex<HashMap<[u8; 32], (Instant, u64)>>,
}

impl QuotaTable {
    pub fn new(route: &str, quota: TokenQuota) -> Self {
        Self {
            quota,
            route: Arc::from(route),
            tag: format!("{}/{}ms", quota.tokens, quota.per.as_millis()),
            used: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<[u8; 32], (Instant, u64)>> {
        self.used.lock()
    }

    /// Seconds until `key`'s window ends when it has used its quota; `None` while it may go on.
    pub fn exhausted(&self, key: &[u8; 32], now: Instant) -> Option<u64> {
        let mut used = self.lock();
        let (start, tokens) = *used.get(key)?;
        let end = start + self.quota.per;
        if now >= end {
            used.remove(key);
            return None;
        }
        (tokens >= self.quota.tokens).then(|| end.duration_since(now).as_secs().max(1))
    }

    /// Adds `tokens` to `key`'s current window (a new window when the last one ended).
    pub fn add(&self, key: &[u8; 32], tokens: u64, now: Instant) {
        let mut used = self.lock();
        // Forget ended windows now and then so keys that went quiet do not pile up.
        if used.len() >= 4096 {
            let per = self.quota.per;
            used.retain(|_, (start, _)| now < *start + per);
        }
        let entry = used.entry(*key).or_insert((now, 0));
        if now >= entry.0 + self.quota.per {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(tokens);
    }

    /// [`Self::exhausted`] on the cluster's shared count; `None` when Redis cannot answer now.
    pub async fn shared_exhausted(
        &self,
        cluster: &crate::cluster::Cluster,
        key: &[u8; 32],
    ) -> Option<Option<u64>> {
        let (used, left) = cluster.quota_used(&self.route, &self.tag, key).await?;
        Some((used >= self.quota.tokens && !left.is_zero()).then(|| left.as_secs().max(1)))
    }

    /// The quota's settings.
    pub fn quota(&self) -> &TokenQuota {
        &self.quota
    }

    /// Counts `tokens` locally and, in a cluster, in the shared count (without waiting for it).
    pub fn count(
        &self,
        cluster: Option<&Arc<crate::cluster::Cluster>>,
        key: &[u8; 32],
        tokens: u64,
        now: Instant,
    ) {
        self.add(key, tokens, now);
        if let Some(cluster) = cluster {
            let (route, tag, key, per) =
                (self.route.clone(), self.tag.clone(), *key, self.quota.per);
            let shared = cluster.clone();
            cluster.spawn(async move {
                if let Err(error) = shared.quota_add(&route, &tag, &key, tokens, per).await {
                    tracing::debug!(%error, "cannot count tokens in the shared quota");
                }
            });
        }
    }

    /// Tokens `key` used in its current window.
    pub fn used(&self, key: &[u8; 32]) -> u64 {
        self.lock().get(key).map_or(0, |(_, tokens)| *tokens)
    }
}

/// Reads one response's token usage as its body streams by, and counts it at the end.
#[derive(Debug)]
pub struct Meter {
    table: Arc<QuotaTable>,
    /// The cluster whose shared count also gets the usage.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    key: [u8; 32],
    usage: UsageReader,
    counted: bool,
}

impl Meter {
    pub fn new(
        table: Arc<QuotaTable>,
        key: [u8; 32],
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Self {
        Self {
            table,
            cluster,
            key,
            usage: UsageReader::default(),
            counted: false,
        }
    }

    /// Feeds a body chunk; at the end of the body the usage found (`total_tokens`) is counted.
    pub fn feed(&mut self, chunk: Option<&[u8]>, end: bool) {
        self.usage.feed(chunk, end);
        if self.usage.done() && !self.counted {
            self.counted = true;
            if let Some(tokens) = self.usage.usage().and_then(|u| u.total_tokens) {
                self.table
                    .count(self.cluster.as_ref(), &self.key, tokens, Instant::now());
            }
        }
    }

    /// The usage the body reported, once it ended.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn quota(tokens: u64) -> TokenQuota {
        TokenQuota {
            tokens,
            per: Duration::from_secs(3600),
        }
    }

    #[test]
    fn meters_count_json_and_sse_usage_once() {
        let table = Arc::new(QuotaTable::new("r", quota(100)));
        let key = [1u8; 32];
        let mut json = Meter::new(table.clone(), key, None);
        json.feed(Some(br#"{"usage":{"total_"#), false);
        json.feed(Some(br#"tokens":30}}"#), false);
        json.feed(None, true);
        json.feed(None, true);
        assert_eq!(table.used(&key), 30);

        let mut sse = Meter::new(table.clone(), key, None);
        sse.feed(Some(b"data: {\"choices\":[],\"usage\":null}\n\nda"), false);
        sse.feed(
            Some(b"ta: {\"choices\":[],\"usage\":{\"total_tokens\":12}}\n\ndata: [DONE]"),
            false,
        );
        sse.feed(Some(b"\n\n"), true);
        assert_eq!(table.used(&key), 42);

        let mut none = Meter::new(table.clone(), key, None);
        none.feed(Some(b"data: {\"choices\":[]}\n\n"), true);
        assert_eq!(table.used(&key), 42);
    }

    #[test]
    fn keys_are_refused_until_their_window_ends() {
        let table = QuotaTable::new("r", quota(10));
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let now = Instant::now();
        assert_eq!(table.exhausted(&a, now), None);
        table.add(&a, 9, now);
        assert_eq!(table.exhausted(&a, now), None);
        table.add(&a, 1, now);
        assert_eq!(table.exhausted(&a, now), Some(3600));
        assert_eq!(table.exhausted(&b, now), None);
        let later = now + Duration::from_secs(3600);
        assert_eq!(table.exhausted(&a, later), None);
        assert_eq!(table.used(&a), 0);
    }
}
