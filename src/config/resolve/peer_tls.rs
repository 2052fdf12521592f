//! The files of TLS with peers, read and checked at load: a listener's client CA bundle, an
//! upstream's CA bundle, client certificate and key, and the system roots when an upstream
//! verifies against them. What is kept is exactly what the TLS stacks take later, so building
//! them cannot fail on these files.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::draft::{DraftClientAuth, DraftUpstreamTls, NamedFile};
use crate::config::model::{CaBundle, ClientAuth, ClientIdentity, ServerVerification, UpstreamTls};
use crate::config::report::Report;
use crate::pem;

/// The system's trust roots, read once per load when an upstream needs them.
#[derive(Default)]
pub(super) struct SystemRoots(Option<Result<Arc<[CertificateDer<'static>]>, String>>);

impl SystemRoots {
    fn get(&mut self) -> Result<Arc<[CertificateDer<'static>]>, String> {
        self.0.get_or_insert_with(load_system_roots).clone()
    }
}

fn load_system_roots() -> Result<Arc<[CertificateDer<'static>]>, String> {
    let certificates = pingora::tls::load_native_certs()
        .map_err(|e| format!("cannot read the system's CA certificates: {e}"))?;
    if certificates.is_empty() {
        return Err(
            "the system has no CA certificates (install ca-certificates, or set `ca`)".into(),
        );
    }
    Ok(certificates.into())
}

/// A listener's `client_auth` with its CA bundle read; `None` when it cannot be used (reported).
pub(super) fn client_auth(draft: DraftClientAuth, report: &mut Report) -> Option<ClientAuth> {
    match ca_bundle(&draft.ca) {
        Ok(ca) => Some(ClientAuth {
            mode: draft.mode,
            ca,
        }),
        Err(message) => {
            report.at_value(&draft.at, message);
            None
        }
    }
}

/// An upstream's `tls` with its files read; `None` when they cannot be used (reported).
pub(super) fn upstream_tls(
    draft: DraftUpstreamTls,
    system_roots: &mut SystemRoots,
    report: &mut Report,
) -> Option<UpstreamTls> {
    let verification = match (&draft.ca, draft.verify) {
        (_, false) => Ok(ServerVerification::Off),
        (Some(ca), true) => ca_bundle(ca)
            .map(ServerVerification::Bundle)
            .map_err(|message| report.at_value(&format!("{}.ca", draft.at), message)),
        (None, true) => system_roots
            .get()
            .map(ServerVerification::SystemRoots)
            .map_err(|message| report.at_key(&draft.at, message)),
    };
    let identity = match &draft.identity {
        None => Ok(None),
        Some((cert, key)) => client_identity(cert, key, &draft.at, report).map(Some),
    };
    let (Ok(verification), Ok(identity)) = (verification, identity) else {
        return None;
    };
    Some(UpstreamTls {
        sni: draft.sni,
        verification,
        identity,
        alpn: draft.alpn,
    })
}

/// The certificates of a PEM CA bundle: at least one, each usable as a trust anchor.
fn ca_bundle(file: &NamedFile) -> Result<CaBundle, String> {
    let shown = file.path.display();
    let bytes = std::fs::read(&file.path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certificates = pem::parse_chain(&bytes).map_err(|error| match error {
        pem::ChainError::Empty => format!("{shown} holds no PEM certificate"),
        pem::ChainError::Invalid(error) => format!("invalid PEM in {shown}: {error}"),
    })?;
    let mut store = rustls::RootCertStore::empty();
    for (index, certificate) in certificates.iter().enumerate() {
        store.add(certificate.clone()).map_err(|e| {
            format!(
                "certificate {} in {shown} cannot be a trust anchor: {e}",
                index + 1
            )
        })?;
    }
    Ok(CaBundle {
        path: file.path.clone(),
        certificates: certificates.into(),
    })
}

/// `client_cert` and `client_key`: a chain every X.509 parser reads, and a key that signs for
/// its leaf. Errors go to the key that names the file (`at`: the `tls` path).
fn client_identity(
    cert: &NamedFile,
    key: &NamedFile,
    at: &str,
    report: &mut Report,
) -> Result<ClientIdentity, ()> {
    let cert_at = format!("{at}.client_cert");
    let key_at = format!("{at}.client_key");
    let chain = read_chain(cert).map_err(|message| report.at_value(&cert_at, message));
    let private_key = read_key(key).map_err(|message| report.at_value(&key_at, message));
    let (Ok(chain), Ok(private_key)) = (chain, private_key) else {
        return Err(());
    };
    let key_shown = key.path.display();
    let signing = rustls::crypto::ring::sign::any_supported_type(&private_key).map_err(|e| {
        report.at_value(
            &key_at,
            format!("unsupported private key in {key_shown}: {e}"),
        );
    })?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    if let Err(error) = certified.keys_match() {
        let message = format!(
            "the key in {key_shown} does not match the certificate in {}: {error}",
            cert.path.display()
        );
        report.at_value(&key_at, message);
        return Err(());
    }
    Ok(ClientIdentity {
        cert_path: cert.path.clone(),
        key_path: key.path.clone(),
        chain: chain.into(),
        key: Arc::new(private_key),
    })
}

fn read_chain(file: &NamedFile) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = file.path.display();
    let bytes = std::fs::read(&file.path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let chain = pem::parse_chain(&bytes).map_err(|error| match error {
        pem::ChainError::Empty => format!("{shown} holds no PEM certificate"),
        pem::ChainError::Invalid(error) => format!("invalid PEM in {shown}: {error}"),
    })?;
    for (index, certificate) in chain.iter().enumerate() {
        if let Err(error) = x509_parser::parse_x509_certificate(certificate.as_ref()) {
            return Err(format!(
                "certificate {} in {shown} is invalid: {error}",
                index + 1
            ));
        }
    }
    Ok(chain)
}

fn read_key(file: &NamedFile) -> Result<PrivateKeyDer<'static>, String> {
    let shown = file.path.display();
    let bytes = std::fs::read(&file.path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let key = pem::parse_private_key(&bytes).map_err(|error| match error {
        pem::PemError::NoItemsFound => format!("no PRIVATE KEY found in {shown}"),
        other => format!("invalid PEM in {shown}: {other}"),
    })?;
    // The form the upstream connector takes the key back from.
    if PrivateKeyDer::try_from(key.secret_der().to_vec()).is_err() {
        return Err(format!("the key in {shown} is not PKCS#8, PKCS#1 or SEC1"));
    }
    Ok(key)
}
