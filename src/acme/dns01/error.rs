//! What can go wrong publishing a DNS-01 record, and whether waiting helps: a provider that is
//! down, slow or overloaded (5xx, 429, timeouts, sockets, a server failure) is transient;
//! refused credentials, a zone the provider does not serve, an update it refuses, a TSIG key or
//! a name that cannot work are not. Answers that do not say which count as transient, as every
//! failure did before the distinction was made.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use hickory_proto::dnssec::DnsSecError;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_proto::ProtoError;

/// A failed DNS-01 operation. The text says what failed, as the log and status show it.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// What a configured provider failed at: the records it publishes or their propagation.
    #[error("DNS provider `{provider}`: {}{source}", publishing(.fqdn))]
    Provider {
        provider: String,
        /// The record being published, when the failure is about one.
        fqdn: Option<String>,
        #[source]
        source: Box<DnsError>,
    },

    /// An API token, password or TSIG secret cannot be read.
    #[error("{0}")]
    Secret(String),
    /// The TSIG secret is not base64.
    #[error("the TSIG secret is not valid base64")]
    TsigNotBase64,
    /// The TSIG key is refused by the signer (algorithm, length).
    #[error("TSIG key: {0}")]
    TsigKey(#[source] DnsSecError),
    /// An update could not be signed.
    #[error("signing the update: {0}")]
    Signing(#[source] ProtoError),
    /// A name that is not a valid DNS name.
    #[error("invalid DNS name `{name}`: {source}")]
    InvalidName {
        name: String,
        #[source]
        source: ProtoError,
    },
    /// No usable TLS roots for the provider's API.
    #[error("TLS roots: {0}")]
    TlsRoots(#[source] rustls::Error),
    /// A request that cannot be built (a URL in the settings that is not one).
    #[error("bad request to {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: http::Error,
    },
    /// A DNS message that cannot be encoded (`what`: `encode query`, `encode update`).
    #[error("{what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: ProtoError,
    },
    /// A DNS message longer than TCP framing allows.
    #[error("message too long")]
    TooLong,

    /// The provider's API answered an HTTP error status (`api`: `cloudflare`, `webhook present`).
    #[error("{api} answered {status}{}", detail_suffix(.detail))]
    Status {
        api: String,
        status: u16,
        detail: Option<String>,
    },
    /// The provider refused the credentials (HTTP 401/403 or its own error code for them).
    #[error("{api} refused the credentials: {detail}")]
    Auth { api: String, detail: String },
    /// The API's answer is not the JSON it documents.
    #[error("{api} answered {status} with a body that is not JSON")]
    NotJson { api: &'static str, status: u16 },
    /// The API reported a failure for the request itself (a domain it will not change).
    #[error("{api}: {detail}")]
    Refused { api: &'static str, detail: String },
    /// The API reported a failure without saying whether it lasts.
    #[error("{api}: {detail}")]
    Failed { api: &'static str, detail: String },
    /// The provider has no zone for the name.
    #[error("no {api} zone found for {name}")]
    NoZone { api: &'static str, name: String },
    /// The name is not inside the configured (or found) zone.
    #[error("{name} is not inside zone {zone}")]
    OutsideZone { name: String, zone: String },
    /// No server was configured or found to ask for a name's zone.
    #[error("no server to ask for the zone of {name}")]
    NoServer { name: String },
    /// A server answered, but without the SOA that names the zone.
    #[error("{server} gave no SOA for {name}")]
    NoSoa { server: SocketAddr, name: String },
    /// The zone's NS records led to no address.
    #[error("found no authoritative server for zone {zone}")]
    NoAuthoritative { zone: String },
    /// A primary refused an RFC 2136 update (`action`: `add the TXT record`, …).
    #[error("{server} refused to {action}: {code}")]
    UpdateRefused {
        server: SocketAddr,
        action: &'static str,
        code: ResponseCode,
    },
    /// A DNS server answered a query with an error code.
    #[error("{server} answered {code} for {name} {record_type}")]
    Rcode {
        server: SocketAddr,
        name: String,
        record_type: RecordType,
        code: ResponseCode,
    },
    /// The hook command ran and failed (the end of its stderr).
    #[error("`{} {action}` exited with {status}: {stderr}", command.display())]
    Hook {
        command: PathBuf,
        action: &'static str,
        status: ExitStatus,
        stderr: String,
    },

    /// Nothing came back in time (`what`: `no answer from 10.0.0.53:53`, …).
    #[error("{what} within {after:?}")]
    Timeout { what: String, after: Duration },
    /// A socket, a process or another local operation failed (`what` says which).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP request to the API failed on the way (`what`: method and URL).
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The API's answer broke off while its body was read.
    #[error("{what}: reading the body: {source}")]
    Body {
        what: String,
        #[source]
        source: hyper::Error,
    },
    /// A DNS answer that cannot be decoded.
    #[error("bad answer from {server}: {source}")]
    BadAnswer {
        server: SocketAddr,
        #[source]
        source: ProtoError,
    },
    /// The TXT values did not show on every server in time: the first still missing, and why
    /// when a query failed.
    #[error("TXT record not visible within {timeout:?}: {fqdn} on {server}{}", cause_suffix(.last_error))]
    NotVisible {
        timeout: Duration,
        fqdn: String,
        server: SocketAddr,
        #[source]
        last_error: Option<Box<DnsError>>,
    },
}

fn publishing(fqdn: &Option<String>) -> String {
    fqdn.as_ref()
        .map(|fqdn| format!("publishing {fqdn}: "))
        .unwrap_or_default()
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|detail| format!(": {detail}"))
        .unwrap_or_default()
}

fn cause_suffix(error: &Option<Box<DnsError>>) -> String {
    error
        .as_ref()
        .map(|error| format!(": {error}"))
        .unwrap_or_default()
}

/// HTTP statuses that say "later": server errors, too many requests, request timeout.
fn status_is_transient(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

impl DnsError {
    /// The error for an HTTP error status: refused credentials for 401 and 403, else the status
    /// with what the body said.
    pub fn answered(api: impl Into<String>, status: u16, detail: Option<String>) -> Self {
        let api = api.into();
        match status {
            401 | 403 => Self::Auth {
                api,
                detail: format!("answered {status}{}", detail_suffix(&detail)),
            },
            _ => Self::Status {
                api,
                status,
                detail,
            },
        }
    }

    /// Whether trying again later may succeed without anyone changing anything (see the module
    /// docs for the split).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Provider { source, .. } => source.is_transient(),
            Self::Status { status, .. } => status_is_transient(*status),
            Self::NotJson { status, .. } => !matches!(status, 401 | 403),
            Self::UpdateRefused { code, .. } | Self::Rcode { code, .. } => {
                *code == ResponseCode::ServFail
            }
            Self::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ),
            Self::Failed { .. }
            | Self::NoSoa { .. }
            | Self::NoAuthoritative { .. }
            | Self::Hook { .. }
            | Self::Timeout { .. }
            | Self::Http { .. }
            | Self::Body { .. }
            | Self::BadAnswer { .. }
            | Self::NotVisible { .. } => true,
            Self::Secret(_)
            | Self::TsigNotBase64
            | Self::TsigKey(_)
            | Self::Signing(_)
            | Self::InvalidName { .. }
            | Self::TlsRoots(_)
            | Self::Request { .. }
            | Self::Encode { .. }
            | Self::TooLong
            | Self::Auth { .. }
            | Self::Refused { .. }
            | Self::NoZone { .. }
            | Self::OutsideZone { .. }
            | Self::NoServer { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SocketAddr {
        ([127, 0, 0, 1], 53).into()
    }

    #[test]
    fn outages_and_overload_are_transient() {
        assert!(DnsError::answered("cloudflare", 502, None).is_transient());
        assert!(DnsError::answered("cloudflare", 429, Some("slow down".into())).is_transient());
        let timeout = DnsError::Timeout {
            what: format!("no answer from {}", server()),
            after: Duration::from_secs(3),
        };
        assert!(timeout.is_transient());
        let refused = DnsError::Io {
            what: format!("tcp connect {}", server()),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(refused.is_transient());
        let servfail = DnsError::UpdateRefused {
            server: server(),
            action: "add the TXT record",
            code: ResponseCode::ServFail,
        };
        assert!(servfail.is_transient());
        let not_visible = DnsError::NotVisible {
            timeout: Duration::from_secs(60),
            fqdn: "_acme-challenge.a.test.".into(),
            server: server(),
            last_error: None,
        };
        assert!(not_visible.is_transient());
    }

    #[test]
    fn refusals_and_bad_settings_are_not() {
        let auth = DnsError::answered("cloudflare", 403, Some("[]".into()));
        assert!(matches!(auth, DnsError::Auth { .. }));
        assert!(!auth.is_transient());
        assert!(!DnsError::answered("webhook present", 404, None).is_transient());
        assert!(!DnsError::TsigNotBase64.is_transient());
        let refused = DnsError::UpdateRefused {
            server: server(),
            action: "add the TXT record",
            code: ResponseCode::Refused,
        };
        assert!(!refused.is_transient());
        let zone = DnsError::NoZone {
            api: "Cloudflare",
            name: "a.test".into(),
        };
        assert!(!zone.is_transient());
        let missing_hook = DnsError::Io {
            what: "cannot run /nowhere".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert!(!missing_hook.is_transient());
    }

    #[test]
    fn the_provider_context_keeps_the_cause_and_its_class() {
        let error = DnsError::Provider {
            provider: "cf".into(),
            fqdn: Some("_acme-challenge.a.test.".into()),
            source: Box::new(DnsError::answered("cloudflare", 403, Some("[]".into()))),
        };
        assert_eq!(
            error.to_string(),
            "DNS provider `cf`: publishing _acme-challenge.a.test.: \
             cloudflare refused the credentials: answered 403: []"
        );
        assert!(!error.is_transient());
        let waiting = DnsError::Provider {
            provider: "bind".into(),
            fqdn: None,
            source: Box::new(DnsError::NotVisible {
                timeout: Duration::from_secs(2),
                fqdn: "_acme-challenge.a.test.".into(),
                server: server(),
                last_error: Some(Box::new(DnsError::Timeout {
                    what: format!("no answer from {}", server()),
                    after: Duration::from_secs(3),
                })),
            }),
        };
        assert_eq!(
            waiting.to_string(),
            "DNS provider `bind`: TXT record not visible within 2s: _acme-challenge.a.test. \
             on 127.0.0.1:53: no answer from 127.0.0.1:53 within 3s"
        );
        assert!(waiting.is_transient());
        assert_eq!(
            DnsError::answered("webhook present", 500, None).to_string(),
            "webhook present answered 500"
        );
    }
}
