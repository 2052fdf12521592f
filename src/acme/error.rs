//! What can go wrong keeping a certificate issued, and whether waiting helps. Transient: the CA
//! or the way to it is down or slow (network, timeouts, 5xx, `serverInternal`), `badNonce`,
//! rate limits, a challenge the CA could not verify yet (DNS, routing and firewalls change
//! without us), DNS providers and Redis being away. Not transient: the CA refusing an
//! identifier or the account, settings that cannot work (roots, EAB, secrets, a TSIG key, a
//! challenge type the CA does not offer), and results that fail the same way every time.
//! [`AcmeError::is_transient`] decides how long the manager waits before the next attempt.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use instant_acme::{AuthorizationStatus, ChallengeType, OrderStatus, Problem};

use super::dns01::DnsError;
use crate::cluster::ClusterError;

/// The ACME problem type prefix (RFC 8555 §6.7).
const PROBLEM_PREFIX: &str = "urn:ietf:params:acme:error:";

/// Problem types that mean "not this request, not this way", whenever the CA answers them.
const REFUSALS: &[&str] = &[
    "accountDoesNotExist",
    "alreadyRevoked",
    "badCSR",
    "badPublicKey",
    "badRevocationReason",
    "badSignatureAlgorithm",
    "caa",
    "externalAccountRequired",
    "invalidContact",
    "malformed",
    "rejectedIdentifier",
    "unauthorized",
    "unsupportedContact",
    "unsupportedIdentifier",
    "userActionRequired",
];

/// Problem types that refuse an identifier when a challenge or order fails validation. The
/// other reasons there (`connection`, `dns`, `incorrectResponse`, `tls`, `unauthorized` for a
/// wrong answer) describe the world outside, which changes without a new configuration.
const IDENTIFIER_REFUSALS: &[&str] = &["caa", "rejectedIdentifier", "unsupportedIdentifier"];

/// A step of the conversation with the CA, as messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaStep {
    /// Reaching the directory with stored credentials (the URL).
    Directory(String),
    /// Registering a new account at the directory (the URL).
    Register(String),
    NewOrder,
    Authorization,
    /// Telling the CA a challenge is ready (the identifier).
    Challenge(String),
    Validation,
    Finalize,
    Download,
    RenewalInfo,
}

impl fmt::Display for CaStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directory(url) => write!(f, "ACME directory {url}"),
            Self::Register(url) => write!(f, "ACME directory {url}: registering an account"),
            Self::NewOrder => f.write_str("new order"),
            Self::Authorization => f.write_str("authorization"),
            Self::Challenge(identifier) => write!(f, "challenge for {identifier}"),
            Self::Validation => f.write_str("waiting for validation"),
            Self::Finalize => f.write_str("finalize"),
            Self::Download => f.write_str("downloading the certificate"),
            Self::RenewalInfo => f.write_str("renewal info"),
        }
    }
}

/// One reason the CA gave for a failed order: the order's own problem, or a challenge's
/// (with its identifier).
#[derive(Debug, Clone)]
pub struct ValidationFailure {
    pub identifier: Option<String>,
    pub problem: Problem,
}

impl fmt::Display for ValidationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.identifier {
            Some(identifier) => write!(f, "{identifier}: {}", self.problem),
            None => self.problem.fmt(f),
        }
    }
}

/// A failed ACME operation. The text says what failed, as the log and status show it.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The runtime of the certificate tasks cannot start.
    #[error("cannot start the ACME runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The manager was asked to apply a configuration after it stopped.
    #[error("the ACME runtime has stopped")]
    Stopped,
    /// What the TLS listeners serve (a placeholder, the SNI index) cannot be built.
    #[error("{0}")]
    Serving(String),

    /// The HTTP client for the directory cannot use `ca_root`.
    #[error("ACME client with root {}: {source}", root.display())]
    ClientRoot {
        root: PathBuf,
        #[source]
        source: Box<instant_acme::Error>,
    },
    /// The HTTP client for the directory cannot be built (system roots).
    #[error("ACME client: {0}")]
    Client(#[source] Box<instant_acme::Error>),
    /// The EAB key (a secret file or environment variable) cannot be read.
    #[error("{0}")]
    Secret(String),
    /// The EAB key is not base64url.
    #[error("the EAB HMAC key is not base64url")]
    EabKey,

    /// The CA, or the way to it, failed a step (network, HTTP, an answer that does not parse).
    #[error("{step}: {source}")]
    Ca {
        step: CaStep,
        #[source]
        source: Box<instant_acme::Error>,
    },
    /// The CA answered a step with a problem document.
    #[error("{step}: {problem}")]
    Problem {
        step: CaStep,
        #[source]
        problem: Box<Problem>,
    },
    /// The CA's rate limit; `retry_after` (Unix seconds) when its answer says until when.
    #[error("{step}: {problem}")]
    RateLimited {
        step: CaStep,
        retry_after: Option<i64>,
        #[source]
        problem: Box<Problem>,
    },
    /// An authorization the order needs is neither pending nor valid.
    #[error("authorization for {identifier} is {status:?}")]
    Authorization {
        identifier: String,
        status: AuthorizationStatus,
    },
    /// The CA offers no challenge of the configured type for an identifier.
    #[error("the CA offers no {kind:?} challenge for {identifier}")]
    NoChallenge {
        kind: ChallengeType,
        identifier: String,
    },
    /// The order did not become ready: the CA's reasons (failed challenges).
    #[error("order is {status:?}: {}", reasons(.failures))]
    Validation {
        status: OrderStatus,
        failures: Vec<ValidationFailure>,
    },
    /// One attempt took longer than allowed.
    #[error("no result within {0:?}")]
    AttemptTimeout(Duration),

    /// A DNS-01 provider failed (publishing, propagation).
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// Redis failed a step of issuance that needs it (`context` says which).
    #[error("{context}: {source}")]
    Cluster {
        context: &'static str,
        #[source]
        source: ClusterError,
    },
    /// The cluster's issuance lock was lost during the attempt.
    #[error(transparent)]
    LockLost(ClusterError),

    /// Reading or preparing `state_dir` failed (`action`: `read`, `create`, `restrict`).
    #[error("cannot {action} {}: {source}", path.display())]
    Storage {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing a file in `state_dir` failed.
    #[error("{0}")]
    Write(String),
    /// The account credentials another instance stored in Redis do not parse.
    #[error("the ACME account stored in Redis is unreadable: {0}")]
    SharedAccount(#[source] serde_json::Error),
    /// Credentials or certificate metadata cannot be encoded.
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    /// A chain and key that do not make a servable certificate.
    #[error("{0}")]
    Pem(String),
    #[error("empty certificate chain")]
    EmptyChain,
    /// The leaf does not parse as X.509.
    #[error("invalid certificate: {0}")]
    X509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
}

fn reasons(failures: &[ValidationFailure]) -> String {
    if failures.is_empty() {
        return "no reason given".into();
    }
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AcmeError {
    /// The error of a step the CA failed: its problem document when it sent one (a rate limit
    /// apart, with the time to retry after when it names one), else the transport failure.
    pub fn from_ca(step: CaStep, error: instant_acme::Error) -> Self {
        match error {
            instant_acme::Error::Api(problem) if problem_type(&problem) == Some("rateLimited") => {
                Self::RateLimited {
                    retry_after: problem.detail.as_deref().and_then(retry_after),
                    step,
                    problem: Box::new(problem),
                }
            }
            instant_acme::Error::Api(problem) => Self::Problem {
                step,
                problem: Box::new(problem),
            },
            source => Self::Ca {
                step,
                source: Box::new(source),
            },
        }
    }

    /// When the CA said to try again (Unix seconds), if it did.
    pub fn retry_after(&self) -> Option<i64> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying again later may succeed without anyone changing anything (see the
    /// module docs for the split).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Ca { source, .. } => client_error_is_transient(source),
            Self::Problem { problem, .. } => problem_is_transient(problem),
            Self::Validation { failures, .. } => !failures.iter().any(|failure| {
                problem_type(&failure.problem).is_some_and(|t| IDENTIFIER_REFUSALS.contains(&t))
            }),
            Self::Dns(error) => error.is_transient(),
            Self::Cluster { source, .. } | Self::LockLost(source) => source.is_transient(),
            Self::Storage { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ),
            Self::RateLimited { .. }
            | Self::Authorization { .. }
            | Self::AttemptTimeout(_)
            | Self::Write(_) => true,
            Self::Runtime(_)
            | Self::Stopped
            | Self::Serving(_)
            | Self::ClientRoot { .. }
            | Self::Client(_)
            | Self::Secret(_)
            | Self::EabKey
            | Self::NoChallenge { .. }
            | Self::SharedAccount(_)
            | Self::Encode(_)
            | Self::Pem(_)
            | Self::EmptyChain
            | Self::X509(_) => false,
        }
    }
}

/// The short problem type (`rateLimited`), when the CA used an ACME one.
fn problem_type(problem: &Problem) -> Option<&str> {
    problem.r#type.as_deref()?.strip_prefix(PROBLEM_PREFIX)
}

/// A problem answered to a request: refusals are not transient, nor a compound problem whose
/// parts all are refusals; anything else (server errors, `badNonce`, types this list does not
/// know) is.
fn problem_is_transient(problem: &Problem) -> bool {
    match problem_type(problem) {
        Some("compound") if !problem.subproblems.is_empty() => {
            !problem.subproblems.iter().all(|sub| {
                sub.r#type
                    .as_deref()
                    .and_then(|t| t.strip_prefix(PROBLEM_PREFIX))
                    .is_some_and(|t| REFUSALS.contains(&t))
            })
        }
        Some(kind) => !REFUSALS.contains(&kind),
        None => true,
    }
}

/// Transport and protocol failures of the ACME client: the network, HTTP, a garbled or late
/// answer are transient; a key, URL or feature the client cannot use is not.
fn client_error_is_transient(error: &instant_acme::Error) -> bool {
    match error {
        instant_acme::Error::Api(problem) => problem_is_transient(problem),
        instant_acme::Error::Crypto
        | instant_acme::Error::KeyRejected
        | instant_acme::Error::InvalidUri(_)
        | instant_acme::Error::Unsupported(_) => false,
        _ => true,
    }
}

/// The time in a rate-limit detail such as Let's Encrypt's `…, retry after 2025-01-07 19:24:52
/// UTC: see …` (also with `T` and `Z`), as Unix seconds.
pub fn retry_after(detail: &str) -> Option<i64> {
    let (_, rest) = detail.split_once("retry after ")?;
    let stamp = rest.get(..19)?;
    let number = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<u32>().ok();
    let separators_fit = stamp.as_bytes().get(4) == Some(&b'-')
        && stamp.as_bytes().get(7) == Some(&b'-')
        && matches!(stamp.as_bytes().get(10), Some(b' ' | b'T'))
        && stamp.as_bytes().get(13) == Some(&b':')
        && stamp.as_bytes().get(16) == Some(&b':');
    if !separators_fit {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(number(0..4)?).ok()?,
        month,
        u8::try_from(number(8..10)?).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(number(11..13)?).ok()?,
        u8::try_from(number(14..16)?).ok()?,
        u8::try_from(number(17..19)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(clock).assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str) -> Problem {
        serde_json::from_value(serde_json::json!({
            "type": format!("{PROBLEM_PREFIX}{kind}"),
            "detail": detail,
            "status": 400,
        }))
        .expect("problem")
    }

    fn answered(step: CaStep, kind: &str, detail: &str) -> AcmeError {
        AcmeError::from_ca(step, instant_acme::Error::Api(problem(kind, detail)))
    }

    #[test]
    fn ca_outages_nonces_and_rate_limits_are_transient() {
        let unreachable = AcmeError::from_ca(
            CaStep::Directory("https://127.0.0.1:1/dir".into()),
            instant_acme::Error::Other("connection refused".into()),
        );
        assert!(matches!(unreachable, AcmeError::Ca { .. }));
        assert!(unreachable.is_transient());
        assert!(unreachable
            .to_string()
            .starts_with("ACME directory https://127.0.0.1:1/dir: "));
        assert!(answered(CaStep::NewOrder, "serverInternal", "oops").is_transient());
        assert!(answered(CaStep::Finalize, "badNonce", "stale").is_transient());
        let limited = answered(
            CaStep::NewOrder,
            "rateLimited",
            "too many certificates (5) already issued for this exact set of identifiers in the \
             last 168h0m0s, retry after 2025-01-07 19:24:52 UTC: see https://letsencrypt.org/",
        );
        assert!(matches!(limited, AcmeError::RateLimited { .. }));
        assert!(limited.is_transient());
        assert_eq!(limited.retry_after(), Some(1_736_277_892));
        assert!(AcmeError::AttemptTimeout(Duration::from_secs(600)).is_transient());
        assert!(
            AcmeError::from_ca(CaStep::Validation, instant_acme::Error::Timeout(None))
                .is_transient()
        );
    }

    #[test]
    fn refused_identifiers_accounts_and_settings_are_not() {
        let rejected = answered(CaStep::NewOrder, "rejectedIdentifier", "blocked name");
        assert!(!rejected.is_transient());
        assert_eq!(
            rejected.to_string(),
            "new order: API error: blocked name (urn:ietf:params:acme:error:rejectedIdentifier)"
        );
        assert!(!answered(
            CaStep::Register("https://ca/dir".into()),
            "unauthorized",
            "no"
        )
        .is_transient());
        assert!(!answered(CaStep::NewOrder, "externalAccountRequired", "eab").is_transient());
        assert!(!AcmeError::EabKey.is_transient());
        assert!(!AcmeError::Secret("environment variable EAB is not set".into()).is_transient());
        assert!(!AcmeError::NoChallenge {
            kind: ChallengeType::Dns01,
            identifier: "a.test".into()
        }
        .is_transient());
        let unsupported = AcmeError::from_ca(
            CaStep::NewOrder,
            instant_acme::Error::Unsupported("ACME renewal information (ARI)"),
        );
        assert!(!unsupported.is_transient());
    }

    #[test]
    fn compound_problems_are_refusals_only_when_every_part_is() {
        let compound = |types: &[&str]| -> Problem {
            let subproblems: Vec<serde_json::Value> = types
                .iter()
                .map(|t| serde_json::json!({ "type": format!("{PROBLEM_PREFIX}{t}"), "detail": "x" }))
                .collect();
            serde_json::from_value(serde_json::json!({
                "type": format!("{PROBLEM_PREFIX}compound"),
                "subproblems": subproblems,
            }))
            .expect("problem")
        };
        assert!(!problem_is_transient(&compound(&[
            "rejectedIdentifier",
            "caa"
        ])));
        assert!(problem_is_transient(&compound(&[
            "rejectedIdentifier",
            "serverInternal"
        ])));
    }

    #[test]
    fn failed_challenges_wait_unless_the_identifier_is_refused() {
        let failed = |kind: &str| AcmeError::Validation {
            status: OrderStatus::Invalid,
            failures: vec![ValidationFailure {
                identifier: Some("a.test".into()),
                problem: problem(kind, "reason"),
            }],
        };
        assert!(failed("connection").is_transient());
        assert!(failed("unauthorized").is_transient());
        assert!(failed("dns").is_transient());
        assert!(!failed("caa").is_transient());
        assert!(!failed("rejectedIdentifier").is_transient());
        assert_eq!(
            failed("connection").to_string(),
            "order is Invalid: a.test: API error: reason (urn:ietf:params:acme:error:connection)"
        );
        let silent = AcmeError::Validation {
            status: OrderStatus::Invalid,
            failures: Vec::new(),
        };
        assert_eq!(silent.to_string(), "order is Invalid: no reason given");
    }

    #[test]
    fn dns_and_cluster_failures_keep_their_class() {
        let refused = AcmeError::from(DnsError::TsigNotBase64);
        assert!(!refused.is_transient());
        let away = AcmeError::Cluster {
            context: "cannot publish the HTTP-01 token in Redis",
            source: ClusterError::Timeout(Duration::from_secs(1)),
        };
        assert!(away.is_transient());
        assert_eq!(
            away.to_string(),
            "cannot publish the HTTP-01 token in Redis: no answer from Redis within 1s"
        );
    }

    #[test]
    fn retry_after_reads_the_time_in_a_detail() {
        assert_eq!(
            retry_after("retry after 1970-01-01 00:01:40 UTC"),
            Some(100)
        );
        assert_eq!(
            retry_after("x, retry after 1970-01-02T00:00:00Z: see"),
            Some(86_400)
        );
        assert_eq!(retry_after("retry after soon"), None);
        assert_eq!(retry_after("retry after 1970-13-01 00:00:00 UTC"), None);
        assert_eq!(retry_after("no time here"), None);
    }
}
