//! The certificate families: each served certificate's expiry, from files or ACME, as a
//! timestamp and as seconds left (derived at scrape time).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::IntGaugeVec;

use crate::observe::clock::unix_secs;
use crate::observe::metrics::{Labels, Metrics, Refresh};

/// The certificate families.
pub struct CertMetrics {
    labels: Arc<Labels>,
    not_after: IntGaugeVec,
    expiry: IntGaugeVec,
    /// Certificate name → not-after (Unix seconds), for the seconds-left gauge.
    certificates: Mutex<BTreeMap<String, i64>>,
}

impl std::fmt::Debug for CertMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertMetrics").finish_non_exhaustive()
    }
}

impl CertMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<Arc<Self>> {
        let cert = Arc::new(Self {
            labels: metrics.labels().clone(),
            not_after: metrics.gauge(
                "ferrogate_certificate_not_after_timestamp_seconds",
                "When a certificate expires (Unix seconds).",
                &["certificate"],
            )?,
            expiry: metrics.gauge(
                "ferrogate_certificate_expiry_seconds",
                "Seconds until a certificate expires (negative once expired).",
                &["certificate"],
            )?,
            certificates: Mutex::new(BTreeMap::new()),
        });
        metrics.on_render(cert.clone());
        Ok(cert)
    }

    /// Publishes a certificate's expiry (`not_after` in Unix seconds).
    pub fn expiry(&self, name: &str, not_after: i64) {
        let name = self.labels.names.admit(name);
        self.not_after
            .with_label_values(&[name.as_str()])
            .set(not_after);
        self.certificates.lock().insert(name, not_after);
    }

    /// Removes a certificate that is no longer served.
    pub fn forget(&self, name: &str) {
        let _ = self.not_after.remove_label_values(&[name]);
        let _ = self.expiry.remove_label_values(&[name]);
        self.certificates.lock().remove(name);
    }
}

impl Refresh for CertMetrics {
    fn refresh(&self) {
        let now = unix_secs();
        for (name, not_after) in self.certificates.lock().iter() {
            self.expiry
                .with_label_values(&[name.as_str()])
                .set(not_after.saturating_sub(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_renders_and_forgotten_certificates_go() {
        let metrics = Metrics::new().expect("definitions");
        let certs = CertMetrics::register(&metrics).expect("register");
        certs.expiry("unit-cert", unix_secs() + 3600);
        let text = metrics.render();
        for needle in [
            r#"ferrogate_certificate_not_after_timestamp_seconds{certificate="unit-cert"}"#,
            r#"ferrogate_certificate_expiry_seconds{certificate="unit-cert"} 3"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        certs.forget("unit-cert");
        assert!(!metrics.render().contains("unit-cert"));
    }
}
