//! [`Live`]: the one owner of everything that outlives a configuration (the snapshot in force,
//! upstream pools, rate-limit and quota tables, route observers and server stats, certificates
//! and the ACME manager, the metrics registry and every domain's families, the status board),
//! and the reload transaction over it, in three steps (caddy's build, swap, retire):
//! - [`Live::prepare`]: the cluster plan, the certificate plan and the new snapshot. Reads the
//!   live state, changes none of it; may fail.
//! - [`Live::commit`]: puts the prepared world in force: cluster, certificates, the pieces the
//!   snapshot made anew, then one snapshot swap. Nothing in it can fail.
//! - [`Live::retire`]: forgets what the configuration in force no longer names.

use std::collections::HashSet;
use std::sync::Arc;

use crate::acme::http01::ChallengeTokens;
use crate::acme::metrics::AcmeMetrics;
use crate::acme::{AcmeError, AcmeManager, AcmeReporting, CertPlan};
use crate::cluster::metrics::ClusterMetrics;
use crate::cluster::{ClusterError, ClusterPlan};
use crate::config::model::{Config, ServerVerification};
use crate::geoip::GeoipKeeper;
use crate::inference::metrics::InferenceMetrics;
use crate::observe::Observability;
use crate::otel::{OtelError, Pipeline};
use crate::pool::metrics::PoolMetrics;
use crate::pool::Registry;
use crate::security::metrics::SecurityMetrics;
use crate::security::tables::RouteTables;
use crate::tls::metrics::CertMetrics;
use crate::tls::{CertIndex, CertStore};

use super::metrics::ReloadMetrics;
use super::{Snapshot, SnapshotStore};

/// The process's long-lived state (see the module docs).
pub struct Live {
    pub observe: Observability,
    pub snapshots: Arc<SnapshotStore>,
    /// Upstream pools (health, in-flight, sticky tables, prefix index) by upstream name.
    pub pools: Arc<Registry>,
    /// Rate-limit buckets and token quotas by route name.
    pub route_tables: RouteTables,
    pub certs: Arc<CertStore>,
    pub challenges: Arc<ChallengeTokens>,
    /// Issues and renews ACME certificates; swaps the certificate index.
    pub acme: AcmeManager,
    pub security: Arc<SecurityMetrics>,
    pub inference: Arc<InferenceMetrics>,
    pub reload: ReloadMetrics,
    pub certificates: Arc<CertMetrics>,
    /// The country database routes' `countries` look up, reloaded in place when its file changes.
    pub geoip: GeoipKeeper,
    cluster: ClusterMetrics,
}

/// Why a configuration could not be prepared (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("certificates: {0}")]
    Certificates(#[from] AcmeError),
    #[error("{0}")]
    Otel(#[from] OtelError),
}

/// A configuration ready to be committed: nothing of it is in force yet.
pub struct Prepared {
    config: Config,
    cluster: ClusterPlan,
    certs: CertPlan,
    snapshot: Snapshot,
}

impl Prepared {
    /// The snapshot that commits.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

impl Live {
    /// Empty long-lived state: every family registered, no configuration in force (generation
    /// 0, no listener).
    pub fn new() -> Result<Self, String> {
        let define = |e: prometheus::Error| format!("cannot define the metrics: {e}");
        let observe = Observability::new().map_err(define)?;
        let metrics = observe.metrics.clone();
        let pool_metrics = PoolMetrics::register(&metrics).map_err(define)?;
        let inference = InferenceMetrics::register(&metrics).map_err(define)?;
        let pools = Arc::new(Registry::new(pool_metrics.clone(), inference.clone()));
        pool_metrics.refresh_from(&metrics, &pools);
        let certificates = CertMetrics::register(&metrics).map_err(define)?;
        let certs = Arc::new(CertStore::new(CertIndex::default()));
        let challenges = Arc::new(ChallengeTokens::default());
        let reporting = AcmeReporting {
            board: observe.board.clone(),
            certificates: certificates.clone(),
            metrics: AcmeMetrics::register(&metrics).map_err(define)?,
        };
        let acme = AcmeManager::new(certs.clone(), challenges.clone(), reporting)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            security: SecurityMetrics::register(&metrics).map_err(define)?,
            reload: ReloadMetrics::register(&metrics).map_err(define)?,
            cluster: ClusterMetrics::register(&metrics).map_err(define)?,
            snapshots: Arc::new(SnapshotStore::new(Snapshot::empty())),
            route_tables: RouteTables::default(),
            geoip: GeoipKeeper::default(),
            inference,
            certificates,
            pools,
            certs,
            challenges,
            acme,
            observe,
        })
    }

    /// Long-lived state with `config` in force as generation 1 (start-up).
    pub fn start(config: &Config) -> Result<Arc<Self>, String> {
        crate::tls::install_default_provider();
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            format!(
                "cannot create state_dir {}: {e}",
                config.state_dir.display()
            )
        })?;
        let live = Self::new()?;
        let prepared = live.prepare(config).map_err(|e| e.to_string())?;
        live.commit(prepared);
        Ok(Arc::new(live))
    }

    /// The generation in force.
    pub fn generation(&self) -> u64 {
        self.snapshots.load().generation
    }

    /// Prepares `config` as the next generation: the cluster plan (keep, join a new one, or
    /// none), the certificate plan (what each certificate serves first; reads stored
    /// certificates, may make a placeholder), the trace pipeline (the running one when `otel`
    /// is unchanged; a new one sends nothing until requests use it), and the compiled snapshot. Changes no live state;
    /// on error nothing is prepared.
    pub fn prepare(&self, config: &Config) -> Result<Prepared, PrepareError> {
        let running = self.snapshots.load();
        let cluster = ClusterPlan::prepare(config, running.cluster.as_ref(), &self.cluster)?;
        let certs = self.acme.prepare(config)?;
        // The trace pipeline in force carries on when its settings are unchanged.
        let otel = match &config.otel {
            None => None,
            Some(settings) => match running.otel.as_ref().filter(|p| p.settings() == settings) {
                Some(same) => Some(same.clone()),
                None => Some(Arc::new(Pipeline::new(settings)?)),
            },
        };
        let mut snapshot =
            Snapshot::compile(config, running.generation + 1, self, cluster.cluster());
        snapshot.otel = otel;
        Ok(Prepared {
            config: config.clone(),
            cluster,
            certs,
            snapshot,
        })
    }

    /// Puts a prepared configuration in force and returns its generation: the cluster plan,
    /// the certificates (before the snapshot, so a route that appears with it finds its
    /// certificate), the pools, tables and observers the snapshot made anew, then the snapshot
    /// itself in one swap. Nothing here can fail.
    pub fn commit(&self, prepared: Prepared) -> u64 {
        let Prepared {
            config,
            cluster,
            certs,
            snapshot,
        } = prepared;
        let running = self.snapshots.load();
        cluster.commit(&config, running.cluster.as_ref());
        self.acme.commit(certs, cluster.cluster().cloned());
        self.adopt(&config, &snapshot);
        for upstream in config.upstreams.values() {
            let unverified = upstream
                .tls
                .as_ref()
                .is_some_and(|tls| tls.verification == ServerVerification::Off);
            if unverified {
                tracing::warn!(upstream = %upstream.name, "tls.verify is false: the servers' certificates are not checked");
            }
        }
        let generation = snapshot.generation;
        self.snapshots.swap(snapshot);
        for stale in self.observe.board.config_loaded(&config, generation) {
            self.certificates.forget(&stale);
        }
        for cert in &config.tls.certificates {
            self.certificates.expiry(&cert.name, cert.not_after);
        }
        self.reload.generation(generation);
        let step = config.admin.as_ref().map(|admin| admin.history_step);
        self.observe.history.configure(step);
        generation
    }

    /// Forgets what the configuration in force no longer names: pools of removed upstreams,
    /// tables and observers of removed routes, stats of servers no route watches, and the
    /// history of all of them (nodes: servers no longer in their upstream's pool). Requests in
    /// flight keep what they hold.
    pub fn retire(&self) {
        let snapshot = self.snapshots.load();
        let upstreams: HashSet<&str> = snapshot.upstreams().iter().map(|u| &*u.name).collect();
        self.pools.retain(|name| upstreams.contains(name));
        let routes: HashSet<&str> = snapshot.targets().iter().map(|t| &*t.name).collect();
        self.route_tables.retain(|name| routes.contains(name));
        self.observe
            .observers
            .retain(|route| routes.contains(route));
        let servers: HashSet<(&str, &str)> = snapshot
            .upstreams()
            .iter()
            .flat_map(|u| u.addresses.iter().map(|a| (&*u.name, &**a)))
            .collect();
        self.observe
            .servers
            .retain(|upstream, address| servers.contains(&(upstream, address)));
        let pools: Vec<_> = snapshot
            .upstreams()
            .iter()
            .map(|u| (&*u.name, u.pool.members()))
            .collect();
        let members: HashSet<(&str, &str)> = pools
            .iter()
            .flat_map(|(name, members)| members.iter().map(move |m| (*name, &*m.address)))
            .collect();
        self.observe.history.retain(
            |route| routes.contains(route),
            |upstream| upstreams.contains(upstream),
            |upstream, address| members.contains(&(upstream, address)),
        );
    }

    /// Keeps what `snapshot` made anew: its pools (configured with `config`'s servers), its
    /// routes' tables, its observers (their metric children resolved now) and their server
    /// stats.
    fn adopt(&self, config: &Config, snapshot: &Snapshot) {
        let loaded = config.geoip.as_ref().map(|g| &g.loaded);
        self.geoip.adopt(snapshot.geoip.as_ref(), loaded);
        for upstream in snapshot.upstreams() {
            if let Some(settings) = config.upstreams.get(&*upstream.name) {
                self.pools.adopt(&upstream.pool, settings);
            }
        }
        for target in snapshot.targets() {
            if let Some(guard) = &target.guard {
                self.route_tables.adopt(&target.name, guard);
            }
            target.observer.activate();
            self.observe.observers.adopt(&target.observer);
        }
        for upstream in snapshot.upstreams() {
            for (address, stats) in upstream.addresses.iter().zip(&upstream.server_stats) {
                self.observe.servers.adopt(&upstream.name, address, stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::pool::{Outcome, RequestInfo};

    /// A configuration with one https listener, a route `a` with a rate limit to upstream `u`,
    /// and `more` appended (further routes, upstreams, top-level sections).
    fn load(dir: &Path, state_dir: &Path, routes: &str, upstreams: &str, more: &str) -> Config {
        let yaml = format!(
            "state_dir: {state}\nlisteners: {{ https: 127.0.0.1:1 }}\nroutes:\n  - {{ name: a, upstream: u, rate_limit: {{ key: client_ip, rate: 10/s, burst: 5 }} }}\n{routes}upstreams:\n  u: {{ servers: [ {{ address: 127.0.0.1:2 }} ] }}\n{upstreams}{more}",
            state = state_dir.display()
        );
        crate::config::load_str(&yaml, &dir.join("ferrogate.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    /// Everything a dry run must leave as it was, in comparable form.
    fn registries(live: &Live) -> String {
        let mut pools: Vec<String> = live
            .pools
            .pools()
            .iter()
            .map(|p| {
                let members: Vec<String> =
                    p.members().iter().map(|m| m.address.to_string()).collect();
                format!("{}={members:?}", p.name)
            })
            .collect();
        pools.sort();
        format!(
            "generation {} pools {pools:?} tables {:?} observers {} servers {} board {} certs {:p}\n{}",
            live.generation(),
            live.route_tables.len(),
            live.observe.observers.len(),
            live.observe.servers.len(),
            live.observe.board.snapshot().generation,
            Arc::as_ptr(&live.certs.current()),
            live.observe.metrics.render()
        )
    }

    #[test]
    fn preparing_without_committing_leaves_every_registry_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let live = Live::new().expect("live state");
        let first = load(dir.path(), &state, "", "", "");
        let prepared = live.prepare(&first).expect("prepare");
        assert_eq!(live.generation(), 0, "prepared, not committed");
        live.commit(prepared);
        let before = registries(&live);

        let second = load(
            dir.path(),
            &state,
            "  - { name: b, hosts: [b.test], upstream: v, rate_limit: { key: client_ip, rate: 1/s, burst: 1 } }\n",
            "  v: { servers: [ { address: 127.0.0.1:3 }, { address: 127.0.0.1:4 } ] }\n",
            "",
        );
        let prepared = live.prepare(&second).expect("prepare");
        assert_eq!(prepared.snapshot().upstreams().len(), 2);
        assert_eq!(registries(&live), before, "a dry run changed live state");
        drop(prepared);
        assert_eq!(registries(&live), before);

        // Committing it is what changes them.
        let prepared = live.prepare(&second).expect("prepare");
        assert_eq!(live.commit(prepared), 2);
        let after = registries(&live);
        assert_ne!(after, before);
        let v = live.pools.get("v").expect("pool v kept");
        assert_eq!(v.members().len(), 2);
        assert!(
            after.contains(r#"ferrogate_requests_total{class="2xx",route="b""#),
            "{after}"
        );
    }

    #[test]
    fn a_new_generation_reattaches_to_long_lived_state_and_retires_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let live = Live::new().expect("live state");
        let cfg = load(dir.path(), &state, "", "", "");
        live.commit(live.prepare(&cfg).expect("prepare"));
        let first = live.snapshots.load();
        let upstream = &first.upstreams()[0];
        let headers = http::HeaderMap::new();
        let req = RequestInfo {
            client_ip: None,
            headers: &headers,
            tried: &[],
            inference: None,
        };
        let Outcome::Picked(held) =
            upstream
                .pool
                .select(&upstream.rules(), &req, std::time::Instant::now())
        else {
            panic!("no pick");
        };
        let table = first.targets()[0]
            .guard
            .as_ref()
            .and_then(|g| g.rate_table());
        live.commit(live.prepare(&cfg).expect("prepare"));
        live.retire();
        let second = live.snapshots.load();
        let again = &second.upstreams()[0];
        assert!(Arc::ptr_eq(&upstream.pool, &again.pool));
        let kept = second.targets()[0]
            .guard
            .as_ref()
            .and_then(|g| g.rate_table());
        assert!(Arc::ptr_eq(
            table.expect("rate table").1,
            kept.expect("rate table").1
        ));
        assert!(Arc::ptr_eq(
            &first.targets()[0].observer,
            &second.targets()[0].observer
        ));
        let inflight: u32 = again.status().servers.iter().map(|s| s.inflight).sum();
        assert_eq!(inflight, 1);
        drop(held);
        let inflight: u32 = again.status().servers.iter().map(|s| s.inflight).sum();
        assert_eq!(inflight, 0);

        // Retiring forgets an upstream and a route the configuration no longer names.
        let mut renamed = load(dir.path(), &state, "", "", "");
        renamed.routes[0].name = "a2".into();
        renamed.routes[0].action = crate::config::model::RouteAction::Upstream("w".into());
        let mut w = renamed.upstreams["u"].clone();
        w.name = "w".into();
        renamed.upstreams.clear();
        renamed.upstreams.insert("w".into(), w);
        live.commit(live.prepare(&renamed).expect("prepare"));
        live.retire();
        assert!(live.pools.get("u").is_none());
        assert!(live.pools.get("w").is_some());
        assert_eq!(live.route_tables.len(), (1, 0));
        assert_eq!(live.observe.observers.len(), 1);
    }

    #[test]
    fn the_history_follows_the_admin_section_and_retires_with_the_configuration() {
        use crate::observe::history::Points;

        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let live = Live::new().expect("live state");
        let bare = load(dir.path(), &state, "", "", "");
        live.commit(live.prepare(&bare).expect("prepare"));
        assert!(
            live.observe.history.view().is_none(),
            "no admin, no history"
        );

        let admin = "admin: { history: { step: 250ms } }\n";
        let cfg = load(dir.path(), &state, "", "", admin);
        live.commit(live.prepare(&cfg).expect("prepare"));
        assert_eq!(
            live.observe.history.step(),
            Some(std::time::Duration::from_millis(250))
        );
        let points = Points {
            routes: vec![("a".into(), [Some(1.0), None, None, None])],
            upstreams: vec![("u".into(), [Some(1.0), None, None, None])],
            nodes: vec![
                (("u".into(), "127.0.0.1:2".into()), [None; 8]),
                (("u".into(), "127.0.0.1:9".into()), [None; 8]),
            ],
            decisions: Vec::new(),
        };
        live.observe
            .history
            .record(std::time::Instant::now(), 0, &points);
        live.retire();
        let view = live.observe.history.view().expect("history on");
        assert!(view.routes.contains_key("a") && view.upstreams.contains_key("u"));
        assert_eq!(
            view.nodes["u"].keys().collect::<Vec<_>>(),
            ["127.0.0.1:2"],
            "a server no longer in the pool"
        );

        let mut renamed = load(dir.path(), &state, "", "", admin);
        renamed.routes[0].name = "a2".into();
        live.commit(live.prepare(&renamed).expect("prepare"));
        live.retire();
        let view = live.observe.history.view().expect("history on");
        assert!(view.routes.is_empty(), "{view:?}");
        assert!(view.upstreams.contains_key("u"));
    }

    #[test]
    fn the_trace_pipeline_carries_over_an_unchanged_otel_section_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let live = Live::new().expect("live state");
        let otel = |port: u16| format!("otel: {{ endpoint: http://127.0.0.1:{port} }}\n");
        live.commit(
            live.prepare(&load(dir.path(), &state, "", "", ""))
                .expect("prepare"),
        );
        assert!(live.snapshots.load().otel.is_none());
        let first = load(dir.path(), &state, "", "", &otel(4318));
        live.commit(live.prepare(&first).expect("prepare"));
        let running = live.snapshots.load().otel.clone().expect("a pipeline");
        assert_eq!(
            running.settings().endpoint,
            "http://127.0.0.1:4318/v1/traces"
        );
        live.commit(live.prepare(&first).expect("prepare"));
        let same = live.snapshots.load().otel.clone().expect("a pipeline");
        assert!(
            Arc::ptr_eq(&running, &same),
            "an unchanged section keeps its pipeline"
        );
        let moved = load(dir.path(), &state, "", "", &otel(4319));
        let prepared = live.prepare(&moved).expect("prepare");
        assert!(Arc::ptr_eq(
            &running,
            live.snapshots.load().otel.as_ref().expect("still in force")
        ));
        live.commit(prepared);
        let new = live.snapshots.load().otel.clone().expect("a pipeline");
        assert!(!Arc::ptr_eq(&running, &new));
        assert_eq!(new.settings().endpoint, "http://127.0.0.1:4319/v1/traces");
    }

    #[test]
    fn routes_to_one_upstream_count_into_the_same_kept_server_stats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let live = Live::new().expect("live state");
        let cfg = load(
            dir.path(),
            &state,
            "  - { name: b, hosts: [b.test], upstream: u }\n",
            "",
            "",
        );
        live.commit(live.prepare(&cfg).expect("prepare"));
        let kept = live
            .observe
            .servers
            .get("u", "127.0.0.1:2")
            .expect("kept stats");
        let snapshot = live.snapshots.load();
        for target in snapshot.targets() {
            let (_, stats) = target.observer.server_stats().next().expect("a server");
            assert!(Arc::ptr_eq(stats, &kept), "route {}", target.name);
        }
    }

    #[test]
    fn a_reload_whose_certificate_step_fails_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let live = Live::new().expect("live state");
        let first = load(dir.path(), &state, "", "", "");
        live.commit(live.prepare(&first).expect("prepare"));
        let before = registries(&live);
        let snapshot = live.snapshots.load();
        let index = live.certs.current();

        // A new cluster and a new route, but the fallback certificate cannot be written: the
        // state dir lies below a regular file.
        let blocked = dir.path().join("a-file");
        std::fs::write(&blocked, "not a directory").expect("write");
        let second = load(
            dir.path(),
            &blocked.join("state"),
            "  - { name: b, hosts: [b.test], upstream: u }\n",
            "",
            "cluster: { name: edge-1, redis: { url: \"redis://127.0.0.1:1/0\" } }\n",
        );
        assert!(second.cluster.is_some());
        let error = match live.prepare(&second) {
            Ok(_) => panic!("the certificate step should have failed"),
            Err(error) => {
                assert!(matches!(error, PrepareError::Certificates(_)), "{error}");
                error
            }
        };
        assert!(
            error.to_string().contains("self-signed") || error.to_string().contains("a-file"),
            "{error}"
        );

        let after = live.snapshots.load();
        assert!(Arc::ptr_eq(&snapshot, &after), "the snapshot changed");
        assert!(after.cluster.is_none(), "a cluster link came up");
        assert!(
            live.acme.cluster().is_none(),
            "the ACME manager got a cluster"
        );
        assert!(
            Arc::ptr_eq(&index, &live.certs.current()),
            "the certificates changed"
        );
        assert_eq!(registries(&live), before);
    }
}
