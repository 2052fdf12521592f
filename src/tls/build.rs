//! Building the whole SNI index for a configuration: its file certificates, the ACME
//! certificates currently served (issued or placeholder), and the self-signed fallback when
//! nothing else is configured. Start-up, reload and the ACME manager all build it here, and swap
//! the result in once.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::{placeholder, CertIndex};
use crate::config::model::Config;

/// The index for `config`; `acme` maps an ACME certificate's name to what is served for it.
/// The first certificate of the file, file or ACME, is the default.
pub fn build_index(
    config: &Config,
    acme: &BTreeMap<String, Arc<CertifiedKey>>,
) -> Result<CertIndex, String> {
    let fallback = fallback_for(config, acme)?;
    Ok(index_with(config, acme, fallback))
}

/// The self-signed fallback `config` needs (made or loaded from its state dir): only when it
/// serves TLS and no certificate would be in its index.
pub fn fallback_for(
    config: &Config,
    acme: &BTreeMap<String, Arc<CertifiedKey>>,
) -> Result<Option<Arc<CertifiedKey>>, String> {
    let serves_tls = config.listeners.iter().any(|l| l.tls);
    if !serves_tls || !index_with(config, acme, None).is_empty() {
        return Ok(None);
    }
    let (key, made) = placeholder::load_or_create(&config.state_dir)?;
    if made {
        tracing::info!(
            state_dir = %config.state_dir.display(),
            "made a self-signed placeholder certificate (no certificate configured)"
        );
    }
    Ok(Some(key))
}

/// The index for `config` with `fallback` (from [`fallback_for`]) as the certificate of last
/// resort. Cannot fail.
pub fn index_with(
    config: &Config,
    acme: &BTreeMap<String, Arc<CertifiedKey>>,
    fallback: Option<Arc<CertifiedKey>>,
) -> CertIndex {
    let mut index = CertIndex::default();
    let acme_first = config.tls.acme.iter().find(|cert| cert.index == 0);
    if let Some(cert) = acme_first {
        if let Some(key) = acme.get(&cert.name) {
            index.add(&cert.domains, key.clone());
        }
    }
    for cert in &config.tls.certificates {
        index.add(&cert.dns_names, cert.key.clone());
    }
    for cert in &config.tls.acme {
        if let Some(key) = acme.get(&cert.name) {
            index.add(&cert.domains, key.clone());
        }
    }
    if index.is_empty() {
        if let Some(key) = fallback {
            index.set_fallback(key);
        }
    }
    index
}
