//! PEM text → the DER certificates and private keys rustls takes, and the signing material built
//! from them. A leaf: it imports nothing from this crate, so configuration and TLS both use it.

use std::fmt;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use rustls_pki_types::pem::Error as PemError;

/// Why a PEM certificate chain could not be read.
#[derive(Debug)]
pub enum ChainError {
    /// A block is malformed.
    Invalid(PemError),
    /// The text holds no `CERTIFICATE` block.
    Empty,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(error) => write!(f, "invalid PEM certificate: {error}"),
            Self::Empty => f.write_str("no PEM certificate found"),
        }
    }
}

impl std::error::Error for ChainError {}

/// Parses every `CERTIFICATE` block of a PEM text, leaf first; at least one.
pub fn parse_chain(chain_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ChainError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ChainError::Invalid)?;
    if chain.is_empty() {
        return Err(ChainError::Empty);
    }
    Ok(chain)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM text; [`PemError::NoItemsFound`]
/// when there is none.
pub fn parse_private_key(key_pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(key_pem)
}

/// Parses a PEM chain (leaf first) and a PEM private key into a [`CertifiedKey`], checking that
/// the key belongs to the leaf. Errors are short sentences fit for a log line.
pub fn certified_key_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, String> {
    let chain = parse_chain(chain_pem).map_err(|e| e.to_string())?;
    let key = parse_private_key(key_pem).map_err(|e| format!("no usable PEM private key: {e}"))?;
    certified_key(chain, &key)
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

    #[test]
    fn chains_and_keys_say_what_is_missing() {
        let pair = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).expect("cert");
        let chain = format!("{}{}", pair.cert.pem(), pair.cert.pem());
        assert_eq!(parse_chain(chain.as_bytes()).map(|c| c.len()).ok(), Some(2));
        assert!(matches!(parse_chain(b"not pem"), Err(ChainError::Empty)));
        assert_eq!(
            parse_chain(b"").unwrap_err().to_string(),
            "no PEM certificate found"
        );
        let key = pair.signing_key.serialize_pem();
        assert!(parse_private_key(key.as_bytes()).is_ok());
        assert!(matches!(
            parse_private_key(pair.cert.pem().as_bytes()),
            Err(PemError::NoItemsFound)
        ));
    }
}
