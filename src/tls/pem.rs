//! Turning PEM certificate chains and private keys into rustls signing material.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Parses a PEM chain (leaf first) and a PEM private key into a [`CertifiedKey`], checking that
/// the key belongs to the leaf. Errors are short sentences fit for a config error message.
pub fn certified_key_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, String> {
    let chain = parse_chain(chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("no usable PEM private key: {e}"))?;
    certified_key(chain, &key)
}

/// Parses every `CERTIFICATE` block of a PEM file, leaf first.
pub fn parse_chain(chain_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(chain)
}

/// Builds the signing key and checks it against the leaf's public key.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> Result<Arc<CertifiedKey>, String> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err("the private key does not match the certificate".into())
        }
        // Key types whose public key cannot be extracted are accepted as they are.
        Err(_) => Ok(Arc::new(certified)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_pair_loads_and_mismatch_is_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).expect("cert a");
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).expect("cert b");
        let cert_a = a.cert.pem();
        assert!(certified_key_from_pem(
            cert_a.as_bytes(),
            a.signing_key.serialize_pem().as_bytes()
        )
        .is_ok());
        let err =
            certified_key_from_pem(cert_a.as_bytes(), b.signing_key.serialize_pem().as_bytes())
                .expect_err("mismatch refused");
        assert!(err.contains("does not match"), "{err}");
        assert!(certified_key_from_pem(b"junk", b"junk").is_err());
    }
}
