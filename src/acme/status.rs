//! Per-certificate status: what is served, when it expires and renews, attempts by result and the
//! last error. A plain struct the manager updates and `ferrogate certs` (and later metrics) read.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What the TLS listeners serve for a certificate's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serving {
    /// A self-signed stand-in until issuance succeeds.
    Placeholder,
    /// A certificate from the CA.
    Issued,
}

/// The status of one ACME certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertStatus {
    pub name: String,
    pub domains: Vec<String>,
    pub serving: Serving,
    pub issuer: Option<String>,
    /// Unix seconds.
    pub not_after: Option<i64>,
    /// When the next issuance or renewal attempt is planned (Unix seconds).
    pub next_attempt: Option<i64>,
    pub last_attempt: Option<i64>,
    pub last_error: Option<String>,
    /// Issuance attempts that ended in a certificate.
    pub attempts_succeeded: u64,
    pub attempts_failed: u64,
    /// Failures since the last success (drives the backoff).
    pub consecutive_failures: u32,
}

impl CertStatus {
    pub fn new(name: &str, domains: &[String]) -> Self {
        Self {
            name: name.to_string(),
            domains: domains.to_vec(),
            serving: Serving::Placeholder,
            issuer: None,
            not_after: None,
            next_attempt: None,
            last_attempt: None,
            last_error: None,
            attempts_succeeded: 0,
            attempts_failed: 0,
            consecutive_failures: 0,
        }
    }
}

/// Every certificate's status by name; cheap to snapshot.
#[derive(Debug, Default)]
pub struct StatusTable {
    entries: Mutex<BTreeMap<String, CertStatus>>,
}

impl StatusTable {
    /// Applies `change` to the named entry (created from `domains` if missing) and returns a copy.
    pub fn update(
        &self,
        name: &str,
        domains: &[String],
        change: impl FnOnce(&mut CertStatus),
    ) -> CertStatus {
        let mut entries = self.entries.lock();
        let entry = entries
            .entry(name.to_string())
            .or_insert_with(|| CertStatus::new(name, domains));
        change(entry);
        entry.clone()
    }

    /// Drops a certificate no longer configured.
    pub fn remove(&self, name: &str) {
        let mut entries = self.entries.lock();
        entries.remove(name);
    }

    /// A copy of every entry.
    pub fn snapshot(&self) -> Vec<CertStatus> {
        let entries = self.entries.lock();
        entries.values().cloned().collect()
    }

    /// A copy of one entry.
    pub fn get(&self, name: &str) -> Option<CertStatus> {
        let entries = self.entries.lock();
        entries.get(name).cloned()
    }
}
