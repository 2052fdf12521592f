//! `tls`: HSTS and certificates: ACME ones with their names and challenge, file ones with their
//! paths (the files are read by `resolve`).

use serde_yaml::Value;

use super::hosts::parse_host;
use super::Checker;
use crate::config::draft::{CertificateFiles, DraftTls};
use crate::config::duration::parse_duration;
use crate::config::model::{AcmeCertificate, Challenge};
use crate::config::raw::{RawCertificate, RawCertificateAcme, RawChallenge, TLS_KEYS};

pub(super) fn check(checker: &mut Checker, value: Option<&Value>) -> DraftTls {
    let mut tls = DraftTls::default();
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
    let elements = checker.sequence(section("certificates"), "tls.certificates");
    for (index, (path, element)) in elements.into_iter().enumerate() {
        let Some(mut raw) = checker.decode::<RawCertificate>(Some(element), &path) else {
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
        if let Some(acme) = raw.acme.take() {
            if let Some(certificate) = check_acme_certificate(checker, &path, index, raw, acme) {
                tls.acme.push(certificate);
            }
        } else if let Some(certificate) = check_certificate(checker, &path, raw) {
            tls.certificates.push(certificate);
        }
    }
    tls
}

fn check_certificate(
    checker: &mut Checker,
    path: &str,
    raw: RawCertificate,
) -> Option<CertificateFiles> {
    if raw.domains.is_some() && (raw.cert.is_some() || raw.key.is_some()) {
        checker.at_key(
            &format!("{path}.domains"),
            "`domains` goes with `acme`; a file certificate's names come from the certificate",
        );
    }
    match (raw.cert, raw.key) {
        (Some(cert), Some(key)) => Some(CertificateFiles {
            at: path.to_string(),
            name: raw.name,
            cert_path: checker.file_path(&cert),
            key_path: checker.file_path(&key),
        }),
        (Some(_), None) => {
            checker.at_key(&format!("{path}.cert"), "`cert` needs `key` beside it");
            None
        }
        (None, Some(_)) => {
            checker.at_key(&format!("{path}.key"), "`key` needs `cert` beside it");
            None
        }
        (None, None) => {
            let message = if raw.domains.is_some() {
                "a certificate with `domains` needs `acme` (or `cert` and `key` files instead)"
            } else {
                "a certificate needs `cert` and `key` files (or `domains` with `acme`)"
            };
            checker.at_value(path, message);
            None
        }
    }
}

/// An ACME certificate: names to issue for and how; provider names are checked against the
/// `acme` section later.
fn check_acme_certificate(
    checker: &mut Checker,
    path: &str,
    index: usize,
    raw: RawCertificate,
    acme: RawCertificateAcme,
) -> Option<AcmeCertificate> {
    let mut valid = true;
    for key in [("cert", raw.cert.is_some()), ("key", raw.key.is_some())] {
        if key.1 {
            let message = format!(
                "`{}` does not go with `acme`: ACME certificates are issued into state_dir",
                key.0
            );
            checker.at_key(&format!("{path}.{}", key.0), message);
            valid = false;
        }
    }
    if !is_directory_name(&raw.name) {
        checker.at_value(
            &format!("{path}.name"),
            "an ACME certificate's name names its directory in state_dir: letters, digits, `-`, `_` and `.` only, not starting with `.`",
        );
        valid = false;
    }
    let mut domains: Vec<String> = Vec::new();
    match &raw.domains {
        None => {
            checker.at_value(path, "a certificate with `acme` needs `domains`");
            valid = false;
        }
        Some(list) if list.is_empty() => {
            checker.at_value(&format!("{path}.domains"), "`domains` must not be empty");
            valid = false;
        }
        Some(list) => {
            for (i, domain) in list.iter().enumerate() {
                let domain_path = format!("{path}.domains[{i}]");
                match parse_host(domain) {
                    Err(message) => {
                        checker.at_value(&domain_path, message);
                        valid = false;
                    }
                    Ok(_) => {
                        let lower = domain.to_ascii_lowercase();
                        if domains.contains(&lower) {
                            checker.at_value(&domain_path, format!("duplicate domain `{domain}`"));
                            valid = false;
                        } else if acme.challenge == RawChallenge::Http01 && lower.starts_with("*.")
                        {
                            checker.at_value(
                                &domain_path,
                                "a wildcard name needs `challenge: dns-01` (HTTP-01 cannot validate wildcards)",
                            );
                            valid = false;
                        }
                        domains.push(lower);
                    }
                }
            }
        }
    }
    let provider_path = format!("{path}.acme.dns_provider");
    let challenge = match (acme.challenge, acme.dns_provider) {
        (RawChallenge::Http01, None) => Challenge::Http01,
        (RawChallenge::Http01, Some(_)) => {
            checker.at_key(
                &provider_path,
                "`dns_provider` goes with `challenge: dns-01`",
            );
            return None;
        }
        (RawChallenge::Dns01, Some(provider)) => Challenge::Dns01 { provider },
        (RawChallenge::Dns01, None) => {
            checker.at_value(
                &format!("{path}.acme"),
                "`challenge: dns-01` needs `dns_provider` naming an entry of `acme.dns_providers`",
            );
            return None;
        }
    };
    valid.then_some(AcmeCertificate {
        name: raw.name,
        index,
        domains,
        challenge,
    })
}

/// A name usable as one path component.
fn is_directory_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
