//! `tls`: HSTS and certificates; file certificates are read, parsed and matched with their key.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_yaml::Value;
use x509_parser::extensions::GeneralName;

use super::hosts::parse_host;
use super::not_yet::NotYet;
use super::Checker;
use crate::config::duration::parse_duration;
use crate::config::model::{Certificate, Tls};
use crate::config::raw::{RawCertificate, TLS_KEYS};

pub(super) fn check(checker: &mut Checker, value: Option<&Value>) -> Tls {
    let mut tls = Tls::default();
    let Some(value) = value else {
        return tls;
    };
    let sections = checker.sections(value, "tls", TLS_KEYS);
    let section = |name: &str| sections.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    if let Some(hsts) = checker.decode::<String>(section("hsts"), "tls.hsts") {
        match parse_duration(&hsts) {
            Ok(duration) => tls.hsts = Some(duration),
            Err(message) => checker.at_value("tls.hsts", message),
        }
    }
    let mut names: Vec<(String, String)> = Vec::new();
    for (path, element) in checker.sequence(section("certificates"), "tls.certificates") {
        let Some(raw) = checker.decode::<RawCertificate>(Some(element), &path) else {
            continue;
        };
        let name_path = format!("{path}.name");
        if raw.name.is_empty() {
            checker.at_value(&name_path, "a certificate name must not be empty");
        } else if let Some((_, first)) = names.iter().find(|(name, _)| *name == raw.name) {
            let message = format!(
                "duplicate certificate name `{}` (first used at line {})",
                raw.name,
                checker.line_of(first)
            );
            checker.at_value(&name_path, message);
        }
        names.push((raw.name.clone(), name_path));
        if let Some(certificate) = check_certificate(checker, &path, raw) {
            tls.certificates.push(certificate);
        }
    }
    tls
}

fn check_certificate(
    checker: &mut Checker,
    path: &str,
    raw: RawCertificate,
) -> Option<Certificate> {
    if raw.acme.is_some() {
        checker.not_yet(&format!("{path}.acme"), NotYet::Acme);
        match &raw.domains {
            None => checker.at_value(path, "a certificate with `acme` needs `domains`"),
            Some(domains) if domains.is_empty() => {
                checker.at_value(&format!("{path}.domains"), "`domains` must not be empty")
            }
            Some(domains) => {
                for (index, domain) in domains.iter().enumerate() {
                    if let Err(message) = parse_host(domain) {
                        checker.at_value(&format!("{path}.domains[{index}]"), message);
                    }
                }
            }
        }
    } else if raw.domains.is_some() && (raw.cert.is_some() || raw.key.is_some()) {
        checker.at_key(
            &format!("{path}.domains"),
            "`domains` goes with `acme`; a file certificate's names come from the certificate",
        );
    }
    match (raw.cert, raw.key) {
        (Some(cert), Some(key)) => load_files(checker, path, raw.name, &cert, &key),
        (Some(_), None) => {
            checker.at_key(&format!("{path}.cert"), "`cert` needs `key` beside it");
            None
        }
        (None, Some(_)) => {
            checker.at_key(&format!("{path}.key"), "`key` needs `cert` beside it");
            None
        }
        (None, None) => {
            if raw.acme.is_none() {
                checker.at_value(
                    path,
                    "a certificate needs `cert` and `key` files (or `domains` with `acme`)",
                );
            }
            None
        }
    }
}

fn load_files(
    checker: &mut Checker,
    path: &str,
    name: String,
    cert: &str,
    key: &str,
) -> Option<Certificate> {
    let cert_key = format!("{path}.cert");
    let key_key = format!("{path}.key");
    let cert_path = checker.resolve(cert);
    let key_path = checker.resolve(key);
    let chain = read_chain(&cert_path).map_err(|message| checker.at_value(&cert_key, message));
    let private_key = read_key(&key_path).map_err(|message| checker.at_value(&key_key, message));
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
            checker.at_value(&cert_key, format!("{}: {message}", cert_path.display()));
            return None;
        }
    };
    let signing_key = match rustls::crypto::ring::sign::any_supported_type(&private_key) {
        Ok(signing_key) => signing_key,
        Err(error) => {
            let message = format!("unsupported private key in {}: {error}", key_path.display());
            checker.at_value(&key_key, message);
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
        checker.at_value(&key_key, message);
        return None;
    }
    Some(Certificate {
        name,
        cert_path,
        key_path,
        dns_names,
        key: Arc::new(certified),
        not_after,
    })
}

/// The certificates of a PEM file, leaf first; at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read certificate file {}: {error}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("invalid PEM in {}: {error}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("no CERTIFICATE found in {}", path.display()));
    }
    Ok(chain)
}

/// The first private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read key file {}: {error}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("no PRIVATE KEY found in {}", path.display())
        }
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
