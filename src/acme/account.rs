//! The ACME account: created once per directory and kept in
//! `state_dir/acme/accounts/<directory>.json` (0600), restored from there on later starts.

use std::path::Path;

use base64::Engine;
use instant_acme::{Account, AccountBuilder, AccountCredentials, ExternalAccountKey, NewAccount};

use super::storage::{account_path, private_dir};
use crate::config::model::Acme;
use crate::tls::placeholder::write_atomic;

/// An HTTP client for the directory: system roots, or only `ca_root` when set.
fn builder(acme: &Acme) -> Result<AccountBuilder, String> {
    super::install_crypto_provider();
    match &acme.ca_root {
        Some(root) => Account::builder_with_root(root)
            .map_err(|e| format!("ACME client with root {}: {e}", root.display())),
        None => Account::builder().map_err(|e| format!("ACME client: {e}")),
    }
}

/// Restores the stored account for the directory, or registers a new one and stores it.
pub async fn load_or_create(state_dir: &Path, acme: &Acme) -> Result<Account, String> {
    let path = account_path(state_dir, &acme.directory);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<AccountCredentials>(&bytes) {
            Ok(credentials) => {
                return builder(acme)?
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| format!("ACME directory {}: {e}", acme.directory));
            }
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "stored ACME account is unreadable; registering a new account"
            ),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(format!("cannot read {}: {error}", path.display()));
        }
    }
    let contact = acme.email.as_ref().map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = match &acme.eab {
        Some(eab) => {
            let encoded = eab.hmac_key.read()?;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('=').as_bytes())
                .map_err(|_| "the EAB HMAC key is not base64url".to_string())?;
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
        .map_err(|e| {
            format!(
                "ACME directory {}: registering an account: {e}",
                acme.directory
            )
        })?;
    let bytes = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    write_atomic(&path, &bytes, 0o600)?;
    tracing::info!(directory = %acme.directory, id = %account.id(), "registered a new ACME account");
    Ok(account)
}
