//! Metric label values kept bounded: status classes instead of codes, and a budget of distinct
//! values per label (route, upstream, server) beyond which new values collapse into `other`, so a
//! churning discovery result or a config generator can never grow the series without limit. No
//! label ever carries a request path or a client address.

use std::collections::HashSet;

use parking_lot::Mutex;

/// The label value for "no such thing": an unrouted request, a request that never got a server.
pub const NONE: &str = "none";

/// The label value that replaces values beyond a label's budget.
pub const OTHER: &str = "other";

/// Distinct values allowed per label (route, upstream or server) in one process.
pub const DEFAULT_LABEL_BUDGET: usize = 1000;

/// Status classes in the order of [`status_class_index`].
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", NONE];

/// The index into [`STATUS_CLASSES`] for a status code; `none` (5) for 0 (no response was sent)
/// and for anything outside 100..=599.
pub fn status_class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => 5,
    }
}

/// The class label of a status code (`2xx`, ..., `none`).
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// Admits up to `limit` distinct values for one label; later new values become [`OTHER`].
/// Used when label handles are resolved (at configuration load), never per request.
#[derive(Debug)]
pub struct LabelBudget {
    limit: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// `value` itself when already seen or when the budget allows one more, [`OTHER`] otherwise.
    pub fn admit(&self, value: &str) -> String {
        let mut seen = self.seen.lock();
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < self.limit {
            seen.insert(value.to_string());
            return value.to_string();
        }
        OTHER.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_fold_into_classes() {
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(308), "3xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(599), "5xx");
        assert_eq!(status_class(0), "none");
        assert_eq!(status_class(600), "none");
        assert_eq!(status_class(99), "none");
    }

    #[test]
    fn budget_keeps_known_values_and_folds_new_ones() {
        let budget = LabelBudget::new(2);
        assert_eq!(budget.admit("a"), "a");
        assert_eq!(budget.admit("b"), "b");
        assert_eq!(budget.admit("c"), OTHER);
        assert_eq!(budget.admit("a"), "a", "a known value stays itself");
        assert_eq!(budget.admit("b"), "b");
    }
}
