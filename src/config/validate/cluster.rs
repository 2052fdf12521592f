//! `cluster`: the Redis deployment (one server, Redis Cluster nodes or Sentinels), its TLS root
//! and password, the key prefix, and the lock and sync timings.

use std::time::Duration;

use serde_yaml::Value;

use super::acme::secret;
use super::balancing::positive_duration;
use super::Checker;
use crate::config::draft::{CheckedFileKind, DraftCluster};
use crate::config::model::{
    Redis, RedisTarget, DEFAULT_KEY_PREFIX, DEFAULT_LOCK_TTL, DEFAULT_REDIS_TIMEOUT,
    DEFAULT_SYNC_INTERVAL,
};
use crate::config::raw::RawCluster;

/// Shortest lock lifetime: the holder renews it at a third, so a shorter one would flap.
const MIN_LOCK_TTL: Duration = Duration::from_secs(1);
/// Shortest sync period.
const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(100);

impl Checker {
    /// Validates the `cluster` section; `None` when absent or invalid (errors recorded).
    pub(super) fn cluster(&mut self, value: Option<&Value>) -> Option<DraftCluster> {
        let raw = self.decode::<RawCluster>(value, "cluster")?;
        let before = self.error_count();
        let redis = raw.redis;
        let given: Vec<&str> = [
            ("url", redis.url.is_some()),
            ("nodes", redis.nodes.is_some()),
            ("sentinel", redis.sentinel.is_some()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(key, _)| key)
        .collect();
        let target = match (redis.url, redis.nodes, redis.sentinel) {
            _ if given.len() > 1 => {
                self.at_key(
                    &format!("cluster.redis.{}", given[1]),
                    format!(
                        "give one of `url`, `nodes` or `sentinel`, not both `{}` and `{}`",
                        given[0], given[1]
                    ),
                );
                None
            }
            (Some(url), None, None) => self
                .redis_url("cluster.redis.url", &url)
                .then_some(RedisTarget::Single(url)),
            (None, Some(nodes), None) => self
                .redis_urls("cluster.redis.nodes", &nodes)
                .then_some(RedisTarget::Cluster(nodes)),
            (None, None, Some(sentinel)) => {
                let mut ok = self.redis_urls("cluster.redis.sentinel.nodes", &sentinel.nodes);
                if sentinel.master.trim().is_empty() {
                    self.at_value("cluster.redis.sentinel.master", "must not be empty");
                    ok = false;
                }
                ok.then_some(RedisTarget::Sentinel {
                    master: sentinel.master,
                    nodes: sentinel.nodes,
                })
            }
            _ => {
                self.at_value(
                    "cluster.redis",
                    "needs `url` (one server), `nodes` (Redis Cluster) or `sentinel`",
                );
                None
            }
        };
        let tls_ca = redis.tls.and_then(|tls| tls.ca).map(|ca| {
            let path = self.file_path(&ca);
            self.check_file(
                "cluster.redis.tls.ca",
                path.clone(),
                CheckedFileKind::RedisCaRoot,
            );
            path
        });
        let password = if redis.password_file.is_some() || redis.password_env.is_some() {
            secret(
                self,
                "cluster.redis",
                "password",
                redis.password_file,
                redis.password_env,
            )
        } else {
            None
        };
        let key_prefix = match redis.key_prefix {
            Some(prefix) if prefix.is_empty() || prefix.contains(char::is_whitespace) => {
                self.at_value(
                    "cluster.redis.key_prefix",
                    "must be a non-empty word without spaces",
                );
                String::new()
            }
            Some(prefix) => prefix,
            None => DEFAULT_KEY_PREFIX.to_string(),
        };
        let name = match raw.name {
            Some(name) if name.is_empty() || name.contains(char::is_whitespace) => {
                self.at_value("cluster.name", "must be a non-empty word without spaces");
                None
            }
            other => other,
        };
        let lock_ttl = positive_duration(self, "cluster.lock_ttl", raw.lock_ttl, DEFAULT_LOCK_TTL);
        if lock_ttl < MIN_LOCK_TTL {
            self.at_value("cluster.lock_ttl", "must be at least 1s");
        }
        let sync_interval = positive_duration(
            self,
            "cluster.sync_interval",
            raw.sync_interval,
            DEFAULT_SYNC_INTERVAL,
        );
        if sync_interval < MIN_SYNC_INTERVAL {
            self.at_value("cluster.sync_interval", "must be at least 100ms");
        }
        let timeout =
            positive_duration(self, "cluster.timeout", raw.timeout, DEFAULT_REDIS_TIMEOUT);
        if self.error_count() > before {
            return None;
        }
        Some(DraftCluster {
            name,
            redis: Redis {
                target: target?,
                tls_ca,
                password,
                key_prefix,
            },
            lock_ttl,
            sync_interval,
            timeout,
        })
    }

    /// Checks one Redis URL; records the error and returns false when it is not one.
    fn redis_url(&mut self, path: &str, url: &str) -> bool {
        match check_redis_url(url) {
            Ok(()) => true,
            Err(message) => {
                self.at_value(path, message);
                false
            }
        }
    }

    fn redis_urls(&mut self, path: &str, urls: &[String]) -> bool {
        if urls.is_empty() {
            self.at_value(path, "needs at least one URL");
            return false;
        }
        let mut ok = true;
        for (index, url) in urls.iter().enumerate() {
            ok &= self.redis_url(&format!("{path}[{index}]"), url);
        }
        ok
    }
}

/// `redis://HOST[:PORT][/DB]` or `rediss://…` with a host.
fn check_redis_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`{url}` is not a Redis URL (redis://host:port or rediss://host:port)"
        ));
    };
    if scheme != "redis" && scheme != "rediss" {
        return Err(format!(
            "`{url}`: the scheme must be redis:// or rediss:// (TLS)"
        ));
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{url}` has no host"));
    }
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(|_| ())
        .map_err(|e| format!("`{url}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ok, one_error, MINIMAL};
    use crate::config::model::RedisTarget;

    #[test]
    fn absent_means_alone() {
        assert!(ok(MINIMAL).cluster.is_none());
    }

    #[test]
    fn a_single_server_with_defaults() {
        let config = ok(&(MINIMAL.to_string()
            + "cluster:\n  name: edge-1\n  redis: { url: \"redis://127.0.0.1:6379/2\" }\n"));
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.name, "edge-1");
        assert_eq!(
            cluster.redis.target,
            RedisTarget::Single("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(cluster.redis.key_prefix, "ferrogate");
        assert_eq!(cluster.lock_ttl.as_secs(), 60);
        assert_eq!(cluster.sync_interval.as_secs(), 5);
    }

    #[test]
    fn cluster_nodes_and_sentinels() {
        let config = ok(&(MINIMAL.to_string()
            + "cluster:\n  redis:\n    nodes: [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]\n    key_prefix: edge\n  lock_ttl: 10s\n  sync_interval: 500ms\n"));
        let cluster = config.cluster.unwrap();
        assert!(matches!(cluster.redis.target, RedisTarget::Cluster(ref n) if n.len() == 2));
        assert_eq!(cluster.redis.key_prefix, "edge");
        assert_eq!(cluster.sync_interval.as_millis(), 500);
        let config = ok(&(MINIMAL.to_string()
            + "cluster:\n  redis:\n    sentinel: { master: mymaster, nodes: [\"redis://10.0.0.1:26379\"] }\n"));
        assert!(matches!(
            config.cluster.unwrap().redis.target,
            RedisTarget::Sentinel { ref master, .. } if master == "mymaster"
        ));
    }

    #[test]
    fn mistakes_are_placed() {
        let base = MINIMAL.lines().count();
        one_error(
            &(MINIMAL.to_string() + "cluster:\n  redis: { url: \"http://x:1\" }\n"),
            base + 2,
            "cluster.redis.url",
            "redis:// or rediss://",
        );
        one_error(
            &(MINIMAL.to_string()
                + "cluster:\n  redis:\n    url: \"redis://a:1\"\n    nodes: [\"redis://b:1\"]\n"),
            base + 4,
            "cluster.redis.nodes",
            "not both `url` and `nodes`",
        );
        one_error(
            &(MINIMAL.to_string() + "cluster:\n  redis: {}\n"),
            base + 2,
            "cluster.redis",
            "needs `url`",
        );
        one_error(
            &(MINIMAL.to_string()
                + "cluster:\n  redis: { url: \"redis://a:1\" }\n  lock_ttl: 200ms\n"),
            base + 3,
            "cluster.lock_ttl",
            "at least 1s",
        );
        one_error(
            &(MINIMAL.to_string() + "cluster:\n  redis: { url: \"redis://a:1\", db: 3 }\n"),
            base + 2,
            "cluster.redis.db",
            "unknown key",
        );
    }
}
