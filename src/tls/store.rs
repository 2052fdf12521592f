//! The certificate store: an ArcSwap'd SNI index (exact name, then wildcard, then default) that
//! rustls asks on every handshake and that a reload replaces in one swap.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// An immutable SNI index.
#[derive(Default, Clone)]
pub struct CertIndex {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertIndex")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl CertIndex {
    /// Adds a certificate for its DNS names (`*.x` names go to the wildcard table). The first
    /// certificate added for a name keeps it; the first certificate added at all is the default.
    pub fn add(&mut self, dns_names: &[String], key: Arc<CertifiedKey>) {
        for name in dns_names {
            let name = name.to_ascii_lowercase();
            let table = match name.strip_prefix("*.") {
                Some(suffix) => self.wildcard.entry(suffix.to_string()),
                None => self.exact.entry(name),
            };
            table.or_insert_with(|| key.clone());
        }
        if self.default.is_none() {
            self.default = Some(key);
        }
    }

    /// Sets the certificate served when nothing else matches, if none is set yet.
    pub fn set_fallback(&mut self, key: Arc<CertifiedKey>) {
        if self.default.is_none() {
            self.default = Some(key);
        }
    }

    /// The certificate for an SNI name (or for a client that sent none).
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(key) = self.exact.get(&name) {
                return Some(key.clone());
            }
            let wildcard = name
                .split_once('.')
                .and_then(|(_, suffix)| self.wildcard.get(suffix));
            if let Some(key) = wildcard {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }

    /// True when no certificate at all is available.
    pub fn is_empty(&self) -> bool {
        self.default.is_none()
    }
}

/// The live store: long-lived, shared by every TLS listener, replaced whole on reload.
#[derive(Debug, Default)]
pub struct CertStore {
    index: ArcSwap<CertIndex>,
}

impl CertStore {
    pub fn new(index: CertIndex) -> Self {
        Self {
            index: ArcSwap::from_pointee(index),
        }
    }

    /// Replaces the whole index in one atomic swap; handshakes in progress keep the old one.
    pub fn replace(&self, index: CertIndex) {
        self.index.store(Arc::new(index));
    }

    /// The current index.
    pub fn current(&self) -> Arc<CertIndex> {
        self.index.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.index.load().resolve(client_hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    fn key(name: &str) -> Arc<CertifiedKey> {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_string()])
            .expect("generate test certificate");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ));
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).expect("signing key");
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(generated.cert.der().to_vec())],
            signer,
        ))
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let (a, w, d) = (key("a.test"), key("*.w.test"), key("d.test"));
        let mut idx = CertIndex::default();
        idx.add(&["d.test".into()], d.clone());
        idx.add(&["a.test".into()], a.clone());
        idx.add(&["*.w.test".into()], w.clone());
        let pick = |n: Option<&str>| idx.resolve(n).expect("some cert");
        assert!(Arc::ptr_eq(&pick(Some("A.test.")), &a));
        assert!(Arc::ptr_eq(&pick(Some("x.w.test")), &w));
        assert!(Arc::ptr_eq(&pick(Some("x.y.w.test")), &d));
        assert!(Arc::ptr_eq(&pick(Some("w.test")), &d));
        assert!(Arc::ptr_eq(&pick(None), &d));
    }

    #[test]
    fn fallback_only_when_nothing_configured() {
        let (a, p) = (key("a.test"), key("placeholder"));
        let mut idx = CertIndex::default();
        assert!(idx.is_empty());
        idx.set_fallback(p.clone());
        assert!(Arc::ptr_eq(&idx.resolve(Some("zzz")).expect("cert"), &p));
        let mut idx = CertIndex::default();
        idx.add(&["a.test".into()], a.clone());
        idx.set_fallback(p);
        assert!(Arc::ptr_eq(&idx.resolve(Some("zzz")).expect("cert"), &a));
    }

    #[test]
    fn swap_is_seen_by_next_lookup() {
        let (a, b) = (key("a.test"), key("b.test"));
        let mut first = CertIndex::default();
        first.add(&["a.test".into()], a.clone());
        let store = CertStore::new(first);
        let mut second = CertIndex::default();
        second.add(&["a.test".into()], b.clone());
        let before = store.current();
        store.replace(second);
        assert!(Arc::ptr_eq(
            &before.resolve(Some("a.test")).expect("cert"),
            &a
        ));
        assert!(Arc::ptr_eq(
            &store.current().resolve(Some("a.test")).expect("cert"),
            &b
        ));
    }
}
