//! The self-signed placeholder certificate: made once in the state directory on first start and
//! served for any name no configured certificate covers, so a TLS listener always answers.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::pem::certified_key_from_pem;

/// Names the placeholder certificate carries.
pub const PLACEHOLDER_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Directory (under the state dir) holding the placeholder pair.
pub const PLACEHOLDER_DIR: &str = "selfsigned";

/// Loads the placeholder from `state_dir/selfsigned/`, making it first if it is missing or
/// unreadable. Returns the key and whether it was newly made.
pub fn load_or_create(state_dir: &Path) -> Result<(Arc<CertifiedKey>, bool), String> {
    let dir = state_dir.join(PLACEHOLDER_DIR);
    let (cert_path, key_path) = (dir.join("fullchain.pem"), dir.join("key.pem"));
    if let (Ok(cert), Ok(key)) = (fs::read(&cert_path), fs::read(&key_path)) {
        match certified_key_from_pem(&cert, &key) {
            Ok(loaded) => return Ok((loaded, false)),
            Err(e) => tracing::warn!(
                path = %cert_path.display(),
                error = %e,
                "stored self-signed certificate is unusable; making a new one"
            ),
        }
    }
    let names: Vec<String> = PLACEHOLDER_NAMES.iter().map(|s| s.to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
    let (cert_pem, key_pem) = (generated.cert.pem(), generated.signing_key.serialize_pem());
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
    write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
    write_atomic(&cert_path, cert_pem.as_bytes(), 0o644)?;
    let key = certified_key_from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
    Ok((key, true))
}

/// A self-signed certificate for `names`, made in memory: served for an ACME certificate's names
/// until the CA has issued it.
pub fn for_names(names: &[String]) -> Result<Arc<CertifiedKey>, String> {
    let failed = |e: rcgen::Error| format!("cannot generate a placeholder certificate: {e}");
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, PLACEHOLDER_COMMON_NAME);
    params.distinguished_name = subject;
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    certified_key_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

/// Subject and issuer CN of the per-name placeholders, so a client shows what it is.
pub const PLACEHOLDER_COMMON_NAME: &str = "ferrogate placeholder (certificate not issued yet)";

/// Writes a file through a temporary sibling, fsync and rename, so a crash never leaves half a key.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp: PathBuf = path.with_extension("tmp");
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reused_with_private_key_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, made) = load_or_create(dir.path()).expect("create");
        assert!(made);
        let (second, made_again) = load_or_create(dir.path()).expect("reload");
        assert!(!made_again);
        assert_eq!(first.cert[0], second.cert[0]);
        let mode = fs::metadata(dir.path().join("selfsigned/key.pem"))
            .expect("key exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
