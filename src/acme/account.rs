//! The ACME account: created once per directory and kept in
//! `state_dir/acme/accounts/<directory>.json` (0600), restored from there on later starts. With a
//! cluster, the account lives in Redis too, so every instance orders under the same one.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use instant_acme::{Account, AccountBuilder, AccountCredentials, ExternalAccountKey, NewAccount};

use super::storage::{account_path, private_dir};
use super::{AcmeError, CaStep};
use crate::cluster::Cluster;
use crate::config::model::Acme;
use crate::tls::placeholder::write_atomic;

/// An HTTP client for the directory: system roots, or only `ca_root` when set.
fn builder(acme: &Acme) -> Result<AccountBuilder, AcmeError> {
    crate::tls::install_default_provider();
    match &acme.ca_root {
        Some(root) => Account::builder_with_root(root).map_err(|source| AcmeError::ClientRoot {
            root: root.clone(),
            source: Box::new(source),
        }),
        None => Account::builder().map_err(|e| AcmeError::Client(Box::new(e))),
    }
}

/// The account for stored credentials, from the directory.
async fn restore(acme: &Acme, credentials: AccountCredentials) -> Result<Account, AcmeError> {
    builder(acme)?
        .from_credentials(credentials)
        .await
        .map_err(|e| AcmeError::from_ca(CaStep::Directory(acme.directory.clone()), e))
}

/// Restores the stored account for the directory (the cluster's first, then the local file), or
/// registers a new one and stores it.
pub async fn load_or_create(
    state_dir: &Path,
    acme: &Acme,
    cluster: Option<&Arc<Cluster>>,
) -> Result<Account, AcmeError> {
    let path = account_path(state_dir, &acme.directory);
    let Some(cluster) = cluster else {
        return load_or_create_local(&path, acme).await;
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match cluster.load_account(&stem).await {
        Ok(Some(json)) => {
            let credentials = serde_json::from_str::<AccountCredentials>(&json)
                .map_err(AcmeError::SharedAccount)?;
            if !path.exists() {
                write_credentials(&path, json.as_bytes())?;
            }
            return restore(acme, credentials).await;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::debug!(%error, "cannot read the shared ACME account; using the local one");
            return load_or_create_local(&path, acme).await;
        }
    }
    // Nothing shared yet: share this instance's account (or a new one); if another instance
    // shared one meanwhile, use that instead.
    let account = load_or_create_local(&path, acme).await?;
    let Ok(json) = std::fs::read_to_string(&path) else {
        return Ok(account);
    };
    match cluster.store_account(&stem, &json).await {
        Ok(in_force) if in_force != json => {
            let credentials = serde_json::from_str::<AccountCredentials>(&in_force)
                .map_err(AcmeError::SharedAccount)?;
            write_credentials(&path, in_force.as_bytes())?;
            tracing::info!(directory = %acme.directory, "using the ACME account another instance shared");
            restore(acme, credentials).await
        }
        Ok(_) => Ok(account),
        Err(error) => {
            tracing::debug!(%error, "cannot share the ACME account");
            Ok(account)
        }
    }
}

fn write_credentials(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    write_atomic(path, bytes, 0o600).map_err(AcmeError::Write)
}

/// The account in the local file, or a new one written there.
async fn load_or_create_local(path: &Path, acme: &Acme) -> Result<Account, AcmeError> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<AccountCredentials>(&bytes) {
            Ok(credentials) => return restore(acme, credentials).await,
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "stored ACME account is unreadable; registering a new account"
            ),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(AcmeError::Storage {
                action: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let contact = acme.email.as_ref().map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = match &acme.eab {
        Some(eab) => {
            let encoded = eab.hmac_key.read().map_err(AcmeError::Secret)?;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('=').as_bytes())
                .map_err(|_| AcmeError::EabKey)?;
            Some(ExternalAccountKey::new(eab.kid.clone(), &key))
        }
        None => None,
    };
    let new_account = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = builder(acme)?
        .create(&new_account, acme.directory.clone(), eab.as_ref())
        .await
        .map_err(|e| AcmeError::from_ca(CaStep::Register(acme.directory.clone()), e))?;
    let bytes = serde_json::to_vec(&credentials)?;
    write_credentials(path, &bytes)?;
    tracing::info!(directory = %acme.directory, id = %account.id(), "registered a new ACME account");
    Ok(account)
}
