//! File certificates: the chain and the key read and parsed, matched with each other, and the
//! leaf's names and expiry taken for SNI selection and the status page.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use crate::config::draft::CertificateFiles;
use crate::config::model::Certificate;
use crate::config::report::Report;
use crate::pem;

/// The certificate `files` name, or `None` with its errors reported at `cert` and `key`.
pub(super) fn load(files: &CertificateFiles, report: &mut Report) -> Option<Certificate> {
    let cert_key = format!("{}.cert", files.at);
    let key_key = format!("{}.key", files.at);
    let (cert_path, key_path) = (&files.cert_path, &files.key_path);
    let chain = read_chain(cert_path).map_err(|message| report.at_value(&cert_key, message));
    let private_key = read_key(key_path).map_err(|message| report.at_value(&key_key, message));
    let (Ok(chain), Ok(private_key)) = (chain, private_key) else {
        return None;
    };
    let described = chain
        .first()
        .ok_or_else(|| "no certificate".to_string())
        .and_then(describe_leaf);
    let (dns_names, not_after) = match described {
        Ok(described) => described,
        Err(message) => {
            report.at_value(&cert_key, format!("{}: {message}", cert_path.display()));
            return None;
        }
    };
    let signing_key = match rustls::crypto::ring::sign::any_supported_type(&private_key) {
        Ok(signing_key) => signing_key,
        Err(error) => {
            let message = format!("unsupported private key in {}: {error}", key_path.display());
            report.at_value(&key_key, message);
            return None;
        }
    };
    let certified = CertifiedKey::new(chain, signing_key);
    if let Err(error) = certified.keys_match() {
        let message = format!(
            "the key in {} does not match the certificate in {}: {error}",
            key_path.display(),
            cert_path.display()
        );
        report.at_value(&key_key, message);
        return None;
    }
    Some(Certificate {
        name: files.name.clone(),
        cert_path: cert_path.clone(),
        key_path: key_path.clone(),
        dns_names,
        key: Arc::new(certified),
        not_after,
    })
}

/// The certificates of a PEM file, leaf first; at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read certificate file {}: {error}", path.display()))?;
    pem::parse_chain(&bytes).map_err(|error| match error {
        pem::ChainError::Invalid(error) => format!("invalid PEM in {}: {error}", path.display()),
        pem::ChainError::Empty => format!("no CERTIFICATE found in {}", path.display()),
    })
}

/// The first private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read key file {}: {error}", path.display()))?;
    pem::parse_private_key(&bytes).map_err(|error| match error {
        pem::PemError::NoItemsFound => format!("no PRIVATE KEY found in {}", path.display()),
        other => format!("invalid PEM in {}: {other}", path.display()),
    })
}

/// The leaf's DNS names (subjectAltName, else the subject CN; lowercased) and its notAfter.
fn describe_leaf(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|error| format!("invalid certificate: {error}"))?;
    let mut names = Vec::new();
    let san = parsed
        .subject_alternative_name()
        .map_err(|error| format!("invalid subjectAltName: {error}"))?;
    if let Some(san) = san {
        for general_name in &san.value.general_names {
            if let GeneralName::DNSName(name) = general_name {
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = parsed.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    Ok((names, parsed.validity().not_after.timestamp()))
}
