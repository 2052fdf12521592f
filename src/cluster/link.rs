//! The connection to Redis: one server through redis-rs's reconnecting `ConnectionManager`, a Redis
//! Cluster through its cluster client, or the master Sentinels name (looked up again whenever the
//! link is checked, so a failover moves the link). Every command has a deadline; after a failure
//! the request path skips Redis until the next successful check instead of waiting on each request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Script};

use super::metrics::ClusterMetrics;
use super::ClusterError;
use crate::config::model::{redact_url, Redis, RedisTarget};

/// An open connection of either kind (both are cheap clones of a shared handle).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The link to Redis and whether it works.
pub struct Link {
    settings: Redis,
    timeout: Duration,
    conn: ArcSwapOption<Conn>,
    up: AtomicBool,
    /// Milliseconds since `epoch` of the last failure (0 = none since the last success).
    failed_at: AtomicU64,
    epoch: Instant,
    /// With Sentinel: the master address the connection points at.
    master: Mutex<Option<String>>,
    /// With Sentinel: the client that asks the Sentinels for the master.
    sentinel: tokio::sync::Mutex<Option<redis::sentinel::Sentinel>>,
    metrics: ClusterMetrics,
}

/// After a failure the request path leaves Redis alone this long (the checker probes sooner).
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl Link {
    pub fn new(settings: Redis, timeout: Duration, metrics: ClusterMetrics) -> Self {
        Self {
            settings,
            timeout,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            failed_at: AtomicU64::new(0),
            epoch: Instant::now(),
            master: Mutex::new(None),
            sentinel: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    /// Whether the last command succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Where it points, passwords removed.
    pub fn describe(&self) -> String {
        let urls: Vec<String> = self
            .settings
            .target
            .urls()
            .into_iter()
            .map(redact_url)
            .collect();
        match &self.settings.target {
            RedisTarget::Single(_) => urls.join(", "),
            RedisTarget::Cluster(_) => format!("cluster {}", urls.join(", ")),
            RedisTarget::Sentinel { master, .. } => {
                format!("sentinel {master} via {}", urls.join(", "))
            }
        }
    }

    fn password(&self) -> Result<Option<String>, ClusterError> {
        self.settings
            .password
            .as_ref()
            .map(|s| s.read())
            .transpose()
            .map_err(ClusterError::Secret)
    }

    fn tls_certificates(&self) -> Result<Option<redis::TlsCertificates>, ClusterError> {
        let Some(path) = &self.settings.tls_ca else {
            return Ok(None);
        };
        let root = std::fs::read(path).map_err(|source| ClusterError::CaFile {
            path: path.clone(),
            source,
        })?;
        Ok(Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root),
        }))
    }

    fn connection_info(&self, url: &str) -> Result<ConnectionInfo, ClusterError> {
        let info = url
            .into_connection_info()
            .map_err(|source| ClusterError::Url {
                url: redact_url(url),
                source,
            })?;
        self.with_password(info)
    }

    /// `info` with the configured password, when one is configured.
    fn with_password(&self, info: ConnectionInfo) -> Result<ConnectionInfo, ClusterError> {
        Ok(match self.password()? {
            Some(password) => {
                let redis = info.redis_settings().clone().set_password(password);
                info.set_redis_settings(redis)
            }
            None => info,
        })
    }

    fn client(&self, info: ConnectionInfo) -> Result<Client, ClusterError> {
        let client = match self.tls_certificates()? {
            Some(certs) => Client::build_with_tls(info, certs),
            None => Client::open(info),
        };
        client.map_err(|source| ClusterError::Connect {
            target: "Redis client",
            source,
        })
    }

    fn manager(&self, client: Client) -> Result<Conn, ClusterError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        ConnectionManager::new_lazy_with_config(client, config)
            .map(Conn::Single)
            .map_err(|source| ClusterError::Connect {
                target: "Redis connection",
                source,
            })
    }

    /// Opens the connection if there is none (and, with Sentinel, follows a new master). Must run
    /// on the runtime that drives the connection.
    pub async fn ensure(&self) -> Result<(), ClusterError> {
        match &self.settings.target {
            RedisTarget::Single(url) => {
                if self.conn.load().is_none() {
                    let conn = self.manager(self.client(self.connection_info(url)?)?)?;
                    self.conn.store(Some(std::sync::Arc::new(conn)));
                }
            }
            RedisTarget::Cluster(nodes) => {
                if self.conn.load().is_none() {
                    let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                        .connection_timeout(self.timeout.max(Duration::from_millis(200)))
                        .response_timeout(self.timeout);
                    if let Some(password) = self.password()? {
                        builder = builder.password(password);
                    }
                    if let Some(certs) = self.tls_certificates()? {
                        builder = builder.certs(certs);
                    }
                    let client = builder.build().map_err(|source| ClusterError::Connect {
                        target: "Redis Cluster client",
                        source,
                    })?;
                    let conn =
                        tokio::time::timeout(self.timeout * 4, client.get_async_connection())
                            .await
                            .map_err(|_| ClusterError::NoAnswer {
                                target: "Redis Cluster",
                            })?
                            .map_err(|source| ClusterError::Connect {
                                target: "Redis Cluster",
                                source,
                            })?;
                    self.conn
                        .store(Some(std::sync::Arc::new(Conn::Cluster(conn))));
                }
            }
            RedisTarget::Sentinel { master, nodes } => {
                // One Sentinel client for the link's life: it keeps its connections to the
                // Sentinels between look-ups.
                let mut sentinel = self.sentinel.lock().await;
                if sentinel.is_none() {
                    *sentinel = Some(redis::sentinel::Sentinel::build(nodes.clone()).map_err(
                        |source| ClusterError::Connect {
                            target: "Sentinel",
                            source,
                        },
                    )?);
                }
                let Some(sentinel) = sentinel.as_mut() else {
                    return Err(ClusterError::Unavailable("Sentinel: no client"));
                };
                let mut node = redis::sentinel::SentinelNodeConnectionInfo::default();
                if nodes.iter().any(|url| url.starts_with("rediss://")) {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let client = tokio::time::timeout(
                    self.timeout * 4,
                    sentinel.async_master_for(master, Some(&node)),
                )
                .await
                .map_err(|_| ClusterError::NoAnswer { target: "Sentinel" })?
                .map_err(|source| ClusterError::Connect {
                    target: "Sentinel",
                    source,
                })?;
                let address = client.get_connection_info().addr().to_string();
                let mut current = self.master.lock();
                if current.as_deref() != Some(address.as_str()) || self.conn.load().is_none() {
                    let info = client.get_connection_info().clone();
                    let conn = self.manager(self.client(self.with_password(info)?)?)?;
                    self.conn.store(Some(std::sync::Arc::new(conn)));
                    if current.is_some() {
                        tracing::warn!(master = %address, "Sentinel names a new Redis master; following it");
                    }
                    *current = Some(address);
                }
            }
        }
        Ok(())
    }

    /// Whether the request path should skip Redis now (it failed a moment ago).
    fn skipping(&self) -> bool {
        let failed = self.failed_at.load(Ordering::Relaxed);
        failed != 0
            && !self.is_up()
            && (self.epoch.elapsed().as_millis() as u64).saturating_sub(failed)
                < SKIP_AFTER_FAILURE.as_millis() as u64
    }

    fn succeeded(&self) {
        self.failed_at.store(0, Ordering::Relaxed);
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.describe(), "Redis is reachable; sharing state with the other instances");
            self.metrics.redis_up(true);
        }
    }

    fn failed(&self, error: &ClusterError) {
        let now = (self.epoch.elapsed().as_millis() as u64).max(1);
        self.failed_at.store(now, Ordering::Relaxed);
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(redis = %self.describe(), %error, "Redis is unreachable; rate limits and quotas count locally, issuance waits for it");
            self.metrics.redis_up(false);
        } else {
            tracing::debug!(%error, "Redis command failed");
        }
    }

    fn current(&self, fast_fail: bool) -> Result<Conn, ClusterError> {
        if fast_fail && self.skipping() {
            return Err(ClusterError::Unavailable(
                "Redis was unreachable a moment ago",
            ));
        }
        match self.conn.load_full() {
            Some(conn) => Ok((*conn).clone()),
            None => Err(ClusterError::Unavailable("not connected to Redis yet")),
        }
    }

    /// Runs one command. With `fast_fail`, fails at once while Redis is known to be away.
    pub async fn query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        fast_fail: bool,
    ) -> Result<T, ClusterError> {
        let conn = self.current(fast_fail)?;
        let work = async {
            match conn {
                Conn::Single(mut c) => cmd.query_async::<T>(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async::<T>(&mut c).await,
            }
        };
        self.finish(
            tokio::time::timeout(self.timeout, work).await,
            ClusterError::Command,
        )
    }

    /// Whether this is a Redis Cluster (multi-key commands must stay on one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.settings.target, RedisTarget::Cluster(_))
    }

    /// Runs a pipeline (one server or Sentinel's master only).
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, ClusterError> {
        let conn = self.current(false)?;
        let work = async {
            match conn {
                Conn::Single(mut c) => pipe.query_async::<T>(&mut c).await,
                Conn::Cluster(mut c) => pipe.query_async::<T>(&mut c).await,
            }
        };
        self.finish(
            tokio::time::timeout(self.timeout, work).await,
            ClusterError::Command,
        )
    }

    /// Runs a script (EVALSHA, loading it on first use).
    pub async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        fast_fail: bool,
    ) -> Result<T, ClusterError> {
        let conn = self.current(fast_fail)?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let work = async {
            match conn {
                Conn::Single(mut c) => invocation.invoke_async::<T>(&mut c).await,
                Conn::Cluster(mut c) => invocation.invoke_async::<T>(&mut c).await,
            }
        };
        self.finish(
            tokio::time::timeout(self.timeout, work).await,
            ClusterError::from_script,
        )
    }

    /// Records the outcome of one call; `failure` types a Redis error (command or script).
    fn finish<T>(
        &self,
        result: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
        failure: fn(redis::RedisError) -> ClusterError,
    ) -> Result<T, ClusterError> {
        let error = match result {
            Ok(Ok(value)) => {
                self.succeeded();
                return Ok(value);
            }
            Ok(Err(error)) => failure(error),
            Err(_) => ClusterError::Timeout(self.timeout),
        };
        self.failed(&error);
        Err(error)
    }
}
