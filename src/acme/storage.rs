//! What the ACME manager keeps in `state_dir`: the account credentials
//! (`acme/accounts/<directory>.json`, 0600) and per certificate
//! `certs/<name>/{fullchain.pem,key.pem,meta.json,status.json}`, all written atomically.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;

use super::status::CertStatus;
use super::AcmeError;
use crate::pem::certified_key_from_pem;
use crate::tls::placeholder::write_atomic;

/// A certificate the CA issued, as stored and served.
#[derive(Clone)]
pub struct Issued {
    pub key: Arc<CertifiedKey>,
    pub meta: Meta,
    pub chain_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("meta", &self.meta).finish()
    }
}

/// `meta.json`: what the leaf says, read once at issuance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// DNS names of the leaf (lowercased).
    pub domains: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The directory it came from.
    #[serde(default)]
    pub directory: String,
    /// When it was stored (Unix seconds).
    #[serde(default)]
    pub issued_at: i64,
}

/// Directory of one certificate.
pub fn cert_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("certs").join(name)
}

/// Account credentials file for a directory URL.
pub fn account_path(state_dir: &Path, directory: &str) -> PathBuf {
    let stem: String = directory
        .trim_start_matches("https://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir
        .join("acme")
        .join("accounts")
        .join(format!("{stem}.json"))
}

/// Creates `dir` (and parents) with mode 0700.
pub fn private_dir(dir: &Path) -> Result<(), AcmeError> {
    let failed = |action| {
        move |source| AcmeError::Storage {
            action,
            path: dir.to_path_buf(),
            source,
        }
    };
    fs::create_dir_all(dir).map_err(failed("create"))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(failed("restrict"))
}

/// Parses a PEM chain and key into a servable certificate and its description.
pub fn parse_issued(chain_pem: &str, key_pem: &str, directory: &str) -> Result<Issued, AcmeError> {
    let key =
        certified_key_from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).map_err(AcmeError::Pem)?;
    let leaf = key.cert.first().ok_or(AcmeError::EmptyChain)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(AcmeError::X509)?;
    let mut domains = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(name) = name {
                domains.push(name.to_ascii_lowercase());
            }
        }
    }
    let meta = Meta {
        domains,
        not_before: parsed.validity().not_before.timestamp(),
        not_after: parsed.validity().not_after.timestamp(),
        issuer: parsed.issuer().to_string(),
        directory: directory.to_string(),
        issued_at: 0,
    };
    Ok(Issued {
        key,
        meta,
        chain_pem: chain_pem.to_string(),
    })
}

/// Writes a newly issued certificate: key (0600) first, then chain, then meta.
pub fn save(state_dir: &Path, name: &str, issued: &Issued, key_pem: &str) -> Result<(), AcmeError> {
    let dir = cert_dir(state_dir, name);
    private_dir(&dir)?;
    write_atomic(&dir.join("key.pem"), key_pem.as_bytes(), 0o600).map_err(AcmeError::Write)?;
    write_atomic(
        &dir.join("fullchain.pem"),
        issued.chain_pem.as_bytes(),
        0o644,
    )
    .map_err(AcmeError::Write)?;
    let meta = serde_json::to_vec_pretty(&issued.meta)?;
    write_atomic(&dir.join("meta.json"), &meta, 0o644).map_err(AcmeError::Write)
}

/// What loading a stored certificate found.
#[derive(Debug)]
pub enum Stored {
    /// Nothing stored yet.
    Missing,
    /// Files exist but cannot be used (the reason); the certificate is issued again.
    Corrupt(String),
    Found(Box<Issued>),
}

/// Loads `certs/<name>/`; never fails the daemon.
pub fn load(state_dir: &Path, name: &str) -> Stored {
    let dir = cert_dir(state_dir, name);
    let chain = fs::read_to_string(dir.join("fullchain.pem"));
    let key = fs::read_to_string(dir.join("key.pem"));
    let (chain, key) = match (chain, key) {
        (Err(c), Err(_)) if c.kind() == std::io::ErrorKind::NotFound => return Stored::Missing,
        (Ok(chain), Ok(key)) => (chain, key),
        (Err(e), _) => return Stored::Corrupt(format!("fullchain.pem: {e}")),
        (_, Err(e)) => return Stored::Corrupt(format!("key.pem: {e}")),
    };
    let directory = fs::read(dir.join("meta.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Meta>(&bytes).ok());
    match parse_issued(&chain, &key, "") {
        Ok(mut issued) => {
            if let Some(stored) = directory {
                issued.meta.directory = stored.directory;
                issued.meta.issued_at = stored.issued_at;
            }
            Stored::Found(Box::new(issued))
        }
        Err(e) => Stored::Corrupt(format!("{}: {e}", dir.display())),
    }
}

/// Writes `status.json` (for `ferrogate certs`); failures only logged.
pub fn save_status(state_dir: &Path, status: &CertStatus) {
    let dir = cert_dir(state_dir, &status.name);
    let result = private_dir(&dir).and_then(|()| {
        let bytes = serde_json::to_vec_pretty(status)?;
        write_atomic(&dir.join("status.json"), &bytes, 0o644).map_err(AcmeError::Write)
    });
    if let Err(error) = result {
        tracing::warn!(certificate = %status.name, %error, "cannot write certificate status");
    }
}

/// Reads `status.json` if there is one.
pub fn load_status(state_dir: &Path, name: &str) -> Option<CertStatus> {
    let bytes = fs::read(cert_dir(state_dir, name).join("status.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let generated = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .expect("generate");
        (generated.cert.pem(), generated.signing_key.serialize_pem())
    }

    #[test]
    fn save_then_load_keeps_meta_and_key_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chain, key) = pair(&["a.test", "*.a.test"]);
        let mut issued = parse_issued(&chain, &key, "https://ca/dir").expect("parse");
        issued.meta.issued_at = 42;
        assert_eq!(issued.meta.domains, ["a.test", "*.a.test"]);
        save(dir.path(), "a", &issued, &key).expect("save");
        let Stored::Found(loaded) = load(dir.path(), "a") else {
            panic!("not found")
        };
        assert_eq!(loaded.meta, issued.meta);
        let mode = fs::metadata(cert_dir(dir.path(), "a").join("key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_and_corrupt_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(load(dir.path(), "x"), Stored::Missing));
        let cert_dir = cert_dir(dir.path(), "x");
        fs::create_dir_all(&cert_dir).expect("mkdir");
        fs::write(cert_dir.join("fullchain.pem"), "garbage").expect("write");
        fs::write(cert_dir.join("key.pem"), "garbage").expect("write");
        assert!(matches!(load(dir.path(), "x"), Stored::Corrupt(_)));
        fs::remove_file(cert_dir.join("key.pem")).expect("rm");
        assert!(matches!(load(dir.path(), "x"), Stored::Corrupt(_)));
    }

    #[test]
    fn account_file_names_are_flat() {
        let path = account_path(Path::new("/s"), "https://127.0.0.1:14000/dir");
        assert_eq!(path, Path::new("/s/acme/accounts/127.0.0.1_14000_dir.json"));
    }
}
