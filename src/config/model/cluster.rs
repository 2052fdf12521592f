//! The `cluster` section: several instances sharing certificates, ACME work and rate-limit counts
//! through Redis. Absent, every instance keeps its state to itself.

use std::path::PathBuf;
use std::time::Duration;

use super::Secret;

/// Default prefix of every key ferrogate writes in Redis.
pub const DEFAULT_KEY_PREFIX: &str = "ferrogate";
/// Default lifetime of the issuance lock (renewed at a third of it while the holder works).
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(60);
/// Default period of heartbeats and of looking for certificates other instances stored.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(5);
/// Default limit on one Redis command on the request path (then the local fallback answers).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The `cluster` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This instance's name among the members (default: the host name).
    pub name: String,
    pub redis: Redis,
    pub lock_ttl: Duration,
    pub sync_interval: Duration,
    pub timeout: Duration,
}

/// `cluster.redis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redis {
    pub target: RedisTarget,
    /// A PEM root to trust for `rediss://` instead of the system roots.
    pub tls_ca: Option<PathBuf>,
    /// Overrides a password in the URLs.
    pub password: Option<Secret>,
    pub key_prefix: String,
}

/// Which kind of Redis deployment, with its URLs (`redis://` or `rediss://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`url`).
    Single(String),
    /// Redis Cluster seed nodes (`nodes`).
    Cluster(Vec<String>),
    /// Sentinels and the name of the master they watch (`sentinel`).
    Sentinel { master: String, nodes: Vec<String> },
}

impl RedisTarget {
    /// Every URL, for display with passwords removed.
    pub fn urls(&self) -> Vec<&str> {
        match self {
            Self::Single(url) => vec![url.as_str()],
            Self::Cluster(nodes) | Self::Sentinel { nodes, .. } => {
                nodes.iter().map(String::as_str).collect()
            }
        }
    }
}

/// A Redis URL with any password replaced by `***` (for logs and the status page).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://:secret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:pw@r.example:6380"),
            "rediss://user:***@r.example:6380"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
