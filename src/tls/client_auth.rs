//! Client certificates on a TLS listener (`client_auth`): the rustls verifier over the listener's
//! client CAs (`optional` lets a client come without one; one it shows must verify), the
//! capture of a verified certificate at the end of the handshake (its RFC 4514 subject and
//! SHA-256 fingerprint, kept in the connection's TLS digest), and the three headers the request
//! path sends upstream from it.
//!
//! pingora's own `SslDigest` keeps the certificate's SHA-256 (`cert_digest`), organization and
//! serial, but not its subject: [`CaptureClientCertificate`] records both fields the headers
//! need, read back with [`verified_client_cert`].

use std::fmt::Write;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::{SslDigest, TlsRef};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::x509::X509Name;

use crate::config::model::{ClientAuth, ClientAuthMode};

/// `SUCCESS` (a verified certificate) or `NONE`.
pub static X_CLIENT_CERT_VERIFY: HeaderName = HeaderName::from_static("x-client-cert-verify");
/// The certificate's subject, RFC 4514.
pub static X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
/// SHA-256 of the certificate's DER, lower-case hex.
pub static X_CLIENT_CERT_FINGERPRINT: HeaderName =
    HeaderName::from_static("x-client-cert-fingerprint");

/// The verifier of a listener's client certificates.
pub fn verifier(
    auth: &ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for certificate in auth.ca.certificates.iter() {
        roots
            .add(certificate.clone())
            .map_err(|e| format!("client CA in {}: {e}", auth.ca.path.display()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth.mode {
        ClientAuthMode::Required => builder,
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}

/// A verified client certificate, as the request path sends it upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// RFC 4514, non-ASCII escaped as `\XX` (header-safe).
    pub subject: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
}

impl ClientCertificate {
    /// Describes a leaf certificate; `None` when it does not parse (it verified, so it does).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut fingerprint = String::with_capacity(64);
        for byte in digest.as_ref() {
            let _ = write!(fingerprint, "{byte:02x}");
        }
        Some(Self {
            subject: rfc4514(certificate.subject()),
            fingerprint,
        })
    }
}

/// Records the verified client certificate of each handshake in its TLS digest.
pub struct CaptureClientCertificate;

#[async_trait]
impl TlsAccept for CaptureClientCertificate {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let certificate = ClientCertificate::from_der(tls.peer_certificate_der()?)?;
        Some(Arc::new(certificate))
    }
}

/// The three headers of a request on a listener with `client_auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertHeaders {
    pub verify: HeaderValue,
    pub subject: Option<HeaderValue>,
    pub fingerprint: Option<HeaderValue>,
}

/// The headers of the verified client certificate recorded in `digest`, if there is one (what a
/// connection keeps for its requests).
pub fn verified_client_cert(digest: Option<&SslDigest>) -> Option<ClientCertHeaders> {
    let certificate = digest?.extension.get::<ClientCertificate>()?;
    Some(ClientCertHeaders {
        verify: HeaderValue::from_static("SUCCESS"),
        subject: HeaderValue::from_str(&certificate.subject).ok(),
        fingerprint: HeaderValue::from_str(&certificate.fingerprint).ok(),
    })
}

impl ClientCertHeaders {
    /// A request that came without a certificate.
    fn none() -> Self {
        Self {
            verify: HeaderValue::from_static("NONE"),
            subject: None,
            fingerprint: None,
        }
    }
}

/// Whether `name` is one of the client certificate headers: a client's own copy is never passed
/// upstream.
pub fn is_client_cert_header(name: &HeaderName) -> bool {
    name == X_CLIENT_CERT_VERIFY
        || name == X_CLIENT_CERT_SUBJECT
        || name == X_CLIENT_CERT_FINGERPRINT
}

/// Adds the client certificate headers to a request going upstream, whose `headers` hold none
/// of them (the client's copies were left out, [`is_client_cert_header`]): on a listener with
/// `client_auth` the connection's own (`verified`: its verified certificate's, else `NONE`).
pub fn add_client_cert_headers(
    headers: &mut HeaderMap,
    client_auth: bool,
    verified: Option<&ClientCertHeaders>,
) {
    if !client_auth {
        return;
    }
    let Some(own) = verified else {
        headers.append(
            X_CLIENT_CERT_VERIFY.clone(),
            ClientCertHeaders::none().verify,
        );
        return;
    };
    headers.append(X_CLIENT_CERT_VERIFY.clone(), own.verify.clone());
    if let Some(subject) = &own.subject {
        headers.append(X_CLIENT_CERT_SUBJECT.clone(), subject.clone());
    }
    if let Some(fingerprint) = &own.fingerprint {
        headers.append(X_CLIENT_CERT_FINGERPRINT.clone(), fingerprint.clone());
    }
}

/// RFC 4514 short names of attribute types (§3); others are written as dotted OIDs.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// A distinguished name as RFC 4514 writes it: the last RDN first, `,` between RDNs, `+`
/// between the attributes of one, special characters escaped.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (index, rdn) in rdns.iter().rev().enumerate() {
        if index > 0 {
            out.push(',');
        }
        for (position, attribute) in rdn.iter().enumerate() {
            if position > 0 {
                out.push('+');
            }
            let oid = attribute.attr_type().to_id_string();
            match SHORT_NAMES.iter().find(|(id, _)| *id == oid) {
                Some((_, short)) => out.push_str(short),
                None => out.push_str(&oid),
            }
            out.push('=');
            match attribute.as_str() {
                Ok(text) => escape_value(text, &mut out),
                // Not a string type: `#` and the hex of its BER encoding.
                Err(_) => {
                    out.push('#');
                    for byte in attribute.attr_value().to_der_vec().unwrap_or_default() {
                        let _ = write!(out, "{byte:02x}");
                    }
                }
            }
        }
    }
    out
}

/// An attribute value escaped per RFC 4514 §2.4, with every byte outside printable ASCII
/// written as `\XX` so the result is a valid header value.
fn escape_value(text: &str, out: &mut String) {
    let last = text.chars().count().saturating_sub(1);
    for (index, c) in text.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (index == 0 && (c == '#' || c == ' '))
            || (index == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                let _ = write!(out, "\\{byte:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
