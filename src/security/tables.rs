//! Long-lived per-route tables that outlive a configuration: rate-limit buckets and token-quota
//! counts, by route name. A reload that keeps a route's settings gets the same table back
//! (clients keep their counts); changed settings start a fresh table. Tables are looked up while
//! a configuration is prepared, kept when it commits ([`RouteTables::adopt`]) and forgotten
//! when its routes are gone ([`RouteTables::retain`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::bucket::{BucketTable, Rate, DEFAULT_MAX_KEYS};
use super::quota::QuotaTable;
use super::RouteGuard;
use crate::config::model::{RateLimit, TokenQuota};

/// Route name → (settings the table was built for, table).
type Tables<S, T> = Mutex<HashMap<String, (S, Arc<T>)>>;

/// Every route's rate-limit and quota tables.
#[derive(Debug, Default)]
pub struct RouteTables {
    rates: Tables<RateLimit, BucketTable>,
    quotas: Tables<TokenQuota, QuotaTable>,
}

impl RouteTables {
    /// The bucket table kept for `route` when its limit is unchanged, else a new one (kept only
    /// when adopted).
    pub fn rate_table(&self, route: &str, limit: &RateLimit) -> Arc<BucketTable> {
        if let Some((settings, table)) = self.rates.lock().get(route) {
            if settings == limit {
                return table.clone();
            }
        }
        let rate = Rate {
            per_second: limit.per_second(),
            burst: limit.burst,
        };
        Arc::new(BucketTable::new(rate, DEFAULT_MAX_KEYS))
    }

    /// The quota table kept for `route` when its quota is unchanged, else a new one.
    pub fn quota_table(&self, route: &str, quota: &TokenQuota) -> Arc<QuotaTable> {
        if let Some((settings, table)) = self.quotas.lock().get(route) {
            if settings == quota {
                return table.clone();
            }
        }
        Arc::new(QuotaTable::new(route, *quota))
    }

    /// Keeps the tables of `route`'s guard.
    pub fn adopt(&self, route: &str, guard: &RouteGuard) {
        if let Some((limit, table)) = guard.rate_table() {
            self.rates
                .lock()
                .insert(route.to_string(), (limit.clone(), table.clone()));
        }
        if let Some(table) = guard.quota_table() {
            self.quotas
                .lock()
                .insert(route.to_string(), (*table.quota(), table.clone()));
        }
    }

    /// Forgets the tables of routes for which `keep` is false.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.rates.lock().retain(|name, _| keep(name));
        self.quotas.lock().retain(|name, _| keep(name));
    }

    /// How many tables are kept (rate limits, quotas).
    pub fn len(&self) -> (usize, usize) {
        (self.rates.lock().len(), self.quotas.lock().len())
    }
}
