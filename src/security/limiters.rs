//! Long-lived token-bucket tables by route name: a reload that keeps a route's rate limit gets the
//! same table back (clients keep their counts); a changed limit starts a fresh table.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use super::bucket::{BucketTable, Rate, DEFAULT_MAX_KEYS};
use crate::config::model::RateLimit;
use parking_lot::Mutex;

/// Route name → (settings it was built for, table).
type Tables = HashMap<String, (RateLimit, Arc<BucketTable>)>;

static TABLES: LazyLock<Mutex<Tables>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The bucket table for `route`'s rate limit, reused when the settings are unchanged.
pub fn table_for(route: &str, limit: &RateLimit) -> Arc<BucketTable> {
    let mut tables = TABLES.lock();
    if let Some((settings, table)) = tables.get(route) {
        if settings == limit {
            return table.clone();
        }
    }
    let rate = Rate {
        per_second: limit.per_second(),
        burst: limit.burst,
    };
    let table = Arc::new(BucketTable::new(rate, DEFAULT_MAX_KEYS));
    tables.insert(route.to_string(), (limit.clone(), table.clone()));
    table
}

/// Forgets the tables of routes not in `keep` (called once per compiled configuration).
pub fn retain(keep: &HashSet<&str>) {
    let mut tables = TABLES.lock();
    tables.retain(|name, _| keep.contains(name.as_str()));
}
