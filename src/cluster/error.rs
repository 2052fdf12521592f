//! What can go wrong between an instance and Redis, and whether waiting helps: Redis away, slow
//! or failing over is transient; settings Redis will never accept (credentials, URLs, a CA file
//! that cannot be read) and scripts or data that fail the same way every time are not.

use std::path::PathBuf;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// A failed cluster operation. The text says what failed, as the log and status show it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The runtime that drives the link could not start.
    #[error("cannot start the cluster runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The Redis password (a secret file or environment variable) cannot be read.
    #[error("{0}")]
    Secret(String),
    /// `tls_ca` cannot be read.
    #[error("{}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A Redis URL the client does not accept (`url` has its password removed).
    #[error("{url}: {source}")]
    Url {
        url: String,
        #[source]
        source: RedisError,
    },
    /// Opening the link failed; `target` names the step (`Redis connection`, `Sentinel`, …).
    #[error("{target}: {source}")]
    Connect {
        target: &'static str,
        #[source]
        source: RedisError,
    },
    /// A server or Sentinel did not answer while the link was opened.
    #[error("{target}: no answer")]
    NoAnswer { target: &'static str },
    /// The request path skips Redis for now, or no connection is open yet.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A command or pipeline failed.
    #[error(transparent)]
    Command(RedisError),
    /// One of the Lua scripts failed inside Redis.
    #[error(transparent)]
    Script(RedisError),
    /// A command got no answer within the configured `timeout`.
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
    /// What an instance writes about itself could not be encoded.
    #[error("{0}")]
    Serialization(#[from] serde_json::Error),
    /// The issuance lock of `certificate` is no longer this instance's (it expired; another
    /// instance may hold it now).
    #[error("the issuance lock expired and another instance may hold it")]
    LockLost { certificate: String },
}

impl ClusterError {
    /// Whether trying again later may succeed without anyone changing anything: Redis away,
    /// slow, loading or failing over, or the lock lost to another instance. Credentials,
    /// URLs, files and script or encoding failures stay as they are until someone acts.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NoAnswer { .. }
            | Self::Unavailable(_)
            | Self::Timeout(_)
            | Self::LockLost { .. } => true,
            Self::Connect { source, .. } | Self::Command(source) => redis_is_transient(source),
            Self::Runtime(_)
            | Self::Secret(_)
            | Self::CaFile { .. }
            | Self::Url { .. }
            | Self::Script(_)
            | Self::Serialization(_) => false,
        }
    }

    /// The error of a script call: failures reported by Redis itself are the script's; the
    /// rest (connection, timeouts) are the link's.
    pub(super) fn from_script(source: RedisError) -> Self {
        match source.kind() {
            ErrorKind::Server(
                ServerErrorKind::ResponseError
                | ServerErrorKind::ExecAbort
                | ServerErrorKind::NoScript,
            ) => Self::Script(source),
            _ => Self::Command(source),
        }
    }
}

/// Whether a Redis client error may go away by itself. Unknown kinds count as transient (a
/// new kind in redis-rs must not stop issuance for hours).
fn redis_is_transient(error: &RedisError) -> bool {
    !matches!(
        error.kind(),
        ErrorKind::AuthenticationFailed
            | ErrorKind::InvalidClientConfig
            | ErrorKind::EmptySentinelList
            | ErrorKind::RESP3NotSupported
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Server(ServerErrorKind::NoPerm)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(kind: ErrorKind) -> RedisError {
        RedisError::from((kind, "test"))
    }

    #[test]
    fn redis_away_is_transient() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(ClusterError::Command(refused).is_transient());
        assert!(ClusterError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(ClusterError::Unavailable("not connected to Redis yet").is_transient());
        assert!(ClusterError::NoAnswer { target: "Sentinel" }.is_transient());
        assert!(
            ClusterError::Command(redis(ErrorKind::Server(ServerErrorKind::BusyLoading)))
                .is_transient()
        );
        assert!(
            ClusterError::Command(redis(ErrorKind::Server(ServerErrorKind::MasterDown)))
                .is_transient()
        );
        assert!(ClusterError::LockLost {
            certificate: "web".into()
        }
        .is_transient());
    }

    #[test]
    fn settings_and_scripts_are_not_transient() {
        let auth = ClusterError::Connect {
            target: "Redis connection",
            source: redis(ErrorKind::AuthenticationFailed),
        };
        assert!(!auth.is_transient());
        assert!(!ClusterError::Command(redis(ErrorKind::InvalidClientConfig)).is_transient());
        assert!(!ClusterError::Secret("environment variable X is not set".into()).is_transient());
        let script =
            ClusterError::from_script(redis(ErrorKind::Server(ServerErrorKind::ResponseError)));
        assert!(matches!(script, ClusterError::Script(_)));
        assert!(!script.is_transient());
        let dropped = ClusterError::from_script(RedisError::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(matches!(dropped, ClusterError::Command(_)));
        assert!(dropped.is_transient());
    }

    #[test]
    fn messages_read_as_before() {
        assert_eq!(
            ClusterError::Timeout(Duration::from_millis(500)).to_string(),
            "no answer from Redis within 500ms"
        );
        assert_eq!(
            ClusterError::NoAnswer {
                target: "Redis Cluster"
            }
            .to_string(),
            "Redis Cluster: no answer"
        );
        assert_eq!(
            ClusterError::LockLost {
                certificate: "web".into()
            }
            .to_string(),
            "the issuance lock expired and another instance may hold it"
        );
    }
}
