//! Membership and the status view: each instance writes a heartbeat (a sorted set of member ids
//! by time, plus a description that expires), drops members silent for three periods, and reads
//! who holds each certificate's issuance lock, for the status page and metrics.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ClusterError, Inner};

/// One instance as it describes itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub version: String,
    /// Unix seconds it joined.
    pub started: i64,
    /// Milliseconds since its last heartbeat (filled in when read).
    #[serde(default)]
    pub seen_ms_ago: i64,
}

/// A certificate's issuance lock and the member id holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub certificate: String,
    pub holder: String,
}

/// What the status page shows about the cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    /// This instance's id.
    pub instance: String,
    /// Redis, passwords removed.
    pub redis: String,
    pub redis_up: bool,
    pub members: Vec<Member>,
    /// Certificates whose issuance lock is held now, and by whom.
    pub locks: Vec<LockHolder>,
    /// The last Redis error, while it is away.
    pub error: Option<String>,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Heartbeats until the cluster's runtime stops.
pub(super) async fn heartbeat(inner: Arc<Inner>) {
    let started = unix_ms() / 1000;
    loop {
        let result = match inner.link.ensure().await {
            Ok(()) => beat(&inner, started).await,
            Err(error) => Err(error),
        };
        let interval = inner.settings.sync_interval;
        let view = match result {
            Ok((members, locks)) => ClusterView {
                instance: inner.id.clone(),
                redis: inner.link.describe(),
                redis_up: true,
                members,
                locks,
                error: None,
            },
            Err(error) => {
                let previous = inner.view.load();
                ClusterView {
                    instance: inner.id.clone(),
                    redis: inner.link.describe(),
                    redis_up: false,
                    members: previous.members.clone(),
                    locks: previous.locks.clone(),
                    error: Some(error.to_string()),
                }
            }
        };
        inner.metrics.view(&view);
        let up = view.redis_up;
        inner.view.store(Arc::new(view));
        // While Redis is away, look again sooner than the sync period.
        let wait = if up {
            interval
        } else {
            interval.min(Duration::from_secs(1))
        };
        tokio::time::sleep(wait).await;
    }
}

/// One heartbeat: announce, expire the silent, read members and lock holders.
async fn beat(inner: &Inner, started: i64) -> Result<(Vec<Member>, Vec<LockHolder>), ClusterError> {
    let now = unix_ms();
    let period = inner.settings.sync_interval.as_millis() as i64;
    let silent = 3 * period.max(1000);
    let me = Member {
        id: inner.id.clone(),
        name: inner.settings.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started,
        seen_ms_ago: 0,
    };
    let description = serde_json::to_string(&me)?;
    let members_key = inner.keys.members();
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD")
        .arg(&members_key)
        .arg(now)
        .arg(&inner.id)
        .ignore()
        .cmd("SET")
        .arg(inner.keys.member(&inner.id))
        .arg(&description)
        .arg("PX")
        .arg(silent)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&members_key)
        .arg("-inf")
        .arg(now - silent)
        .ignore()
        .cmd("ZRANGE")
        .arg(&members_key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES");
    // A pipeline's keys may sit on different Cluster slots: send its commands one by one there.
    let listed: Vec<(String, i64)> = if inner.link.is_cluster() {
        for cmd in pipe.cmd_iter().take(3) {
            inner.link.query::<()>(cmd, false).await?;
        }
        let mut range = redis::cmd("ZRANGE");
        range.arg(&members_key).arg(0).arg(-1).arg("WITHSCORES");
        inner.link.query(&range, false).await?
    } else {
        let (listed,): (Vec<(String, i64)>,) = inner.link.pipeline(&pipe).await?;
        listed
    };
    let mut members = Vec::with_capacity(listed.len());
    for (id, seen) in listed {
        let mut get = redis::cmd("GET");
        get.arg(inner.keys.member(&id));
        let text: Option<String> = inner.link.query(&get, false).await?;
        let Some(mut member) = text.and_then(|t| serde_json::from_str::<Member>(&t).ok()) else {
            continue;
        };
        member.seen_ms_ago = (now - seen).max(0);
        members.push(member);
    }
    members.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let mut locks = Vec::new();
    for name in inner.certificates.load().iter() {
        let mut get = redis::cmd("GET");
        get.arg(inner.keys.cert_lock(name));
        let holder: Option<String> = inner.link.query(&get, false).await?;
        if let Some(holder) = holder {
            locks.push(LockHolder {
                certificate: name.clone(),
                holder: super::shared::holder_of(&holder).to_string(),
            });
        }
    }
    Ok((members, locks))
}
