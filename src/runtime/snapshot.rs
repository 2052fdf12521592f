//! The immutable compiled world: per-listener routing tables pointing at compiled upstreams.
//! Built completely from a validated [`Config`] before it is swapped in; never mutated after.
//! Upstreams name their long-lived [`UpstreamPool`] (servers' health, in-flight counts, sticky
//! tables) from the [`Registry`], so a new snapshot re-attaches to the same state by identity.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;

use crate::config::model::{
    Balance, Cidr, Config, Discovery, Health, Inference, Queue, Sticky, Timeouts, LISTENER_HTTP,
    LISTENER_HTTPS,
};
use crate::observe::RouteObserver;
use crate::pool::select::Rules;
use crate::pool::{Registry, UpstreamPool, UpstreamStatus};
use crate::routing::Router;
use crate::security::{limiters, RouteGuard};

/// Everything the proxy hooks read for one configuration generation.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful load.
    pub generation: u64,
    listeners: Vec<ListenerView>,
    /// Every upstream, by name.
    upstreams: Vec<Arc<UpstreamRuntime>>,
    /// `max_connections_per_ip`, read by each new connection (so a reload changes it).
    pub max_connections_per_ip: Option<u32>,
}

/// What one listener does with a request.
#[derive(Debug)]
pub struct ListenerView {
    pub name: Arc<str>,
    pub tls: bool,
    /// For the plain `http` listener next to an `https` one: the port to redirect to.
    pub redirect_https_port: Option<u16>,
    /// `Strict-Transport-Security` value for responses on this (TLS) listener.
    pub hsts: Option<HeaderValue>,
    pub router: Router<Arc<RouteTarget>>,
    /// `trusted_proxies`: peers whose X-Forwarded-For names the client.
    pub trusted_proxies: Arc<[Cidr]>,
}

/// The routing decision's result: which route matched and where it sends the request.
#[derive(Debug)]
pub struct RouteTarget {
    pub name: Arc<str>,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub upstream: Arc<UpstreamRuntime>,
    /// Metric handles and server counters for this route, resolved once here.
    pub observer: Arc<RouteObserver>,
    /// Access lists and rate limit; `None` when the route sets neither.
    pub guard: Option<Arc<RouteGuard>>,
}

/// A compiled upstream: its settings for this generation and its long-lived pool.
#[derive(Debug)]
pub struct UpstreamRuntime {
    pub name: Arc<str>,
    pub balance: Balance,
    pub sticky: Option<Sticky>,
    pub health: Health,
    /// Further attempts on other servers after a failed one.
    pub retries: u32,
    pub queue: Queue,
    pub discovery: Option<Discovery>,
    pub timeouts: Timeouts,
    /// OpenAI-aware routing settings, when the upstream is a pool of inference servers.
    pub inference: Option<Inference>,
    pub pool: Arc<UpstreamPool>,
}

impl UpstreamRuntime {
    /// What server selection follows.
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            balance: &self.balance,
            sticky: self.sticky.as_ref(),
            slow_start: self.health.slow_start,
            inference: self.inference.as_ref(),
            may_queue: self.queue.size > 0,
        }
    }

    /// Every server's status now.
    pub fn status(&self) -> UpstreamStatus {
        self.pool
            .status(self.balance.name(), self.health.slow_start)
    }
}

impl Snapshot {
    /// Compiles a validated configuration, attaching every upstream to its long-lived pool in
    /// `registry` (created on first use; state of servers that stay is kept) and forgetting pools
    /// of upstreams that are gone. Validation already guaranteed every reference, so compilation
    /// cannot fail on user input. Start-up and reload both call this.
    pub fn compile(config: &Config, generation: u64, registry: &Registry) -> Self {
        registry.retain(config);
        let route_names = config.routes.iter().map(|r| r.name.as_str()).collect();
        limiters::retain(&route_names);
        crate::security::quota::retain(&route_names);
        crate::observe::request::retain_observers(&route_names);
        let upstreams: HashMap<&str, Arc<UpstreamRuntime>> = config
            .upstreams
            .values()
            .map(|u| {
                let compiled = UpstreamRuntime {
                    name: Arc::from(u.name.as_str()),
                    balance: u.balance.clone(),
                    sticky: u.sticky.clone(),
                    health: u.health.clone(),
                    retries: u.retries,
                    queue: u.queue,
                    discovery: u.discovery.clone(),
                    timeouts: u.timeouts,
                    inference: u.inference.clone(),
                    pool: registry.attach(u),
                };
                (u.name.as_str(), Arc::new(compiled))
            })
            .collect();

        let https_port = config.listener(LISTENER_HTTPS).map(|l| l.address.port());
        let default_listener = if https_port.is_some() {
            LISTENER_HTTPS
        } else {
            LISTENER_HTTP
        };
        let hsts = config
            .tls
            .hsts
            .and_then(|d| HeaderValue::from_str(&format!("max-age={}", d.as_secs())).ok());

        let trusted_proxies: Arc<[Cidr]> = config.trusted_proxies.as_slice().into();
        let listeners = config
            .listeners
            .iter()
            .map(|l| {
                let mut router = Router::default();
                for route in &config.routes {
                    let serves_here = match &route.listener {
                        Some(name) => *name == l.name,
                        None => l.name == default_listener,
                    };
                    let Some(upstream) = upstreams.get(route.upstream.as_str()) else {
                        continue;
                    };
                    if serves_here {
                        let target = Arc::new(RouteTarget {
                            name: Arc::from(route.name.as_str()),
                            path_prefix: route.path_prefix.clone(),
                            strip_prefix: route.strip_prefix,
                            upstream: upstream.clone(),
                            // Servers found later by discovery get route-level metrics only.
                            observer: crate::observe::request::observer_for(
                                &route.name,
                                &upstream.name,
                                &upstream
                                    .pool
                                    .members()
                                    .iter()
                                    .map(|m| m.address.clone())
                                    .collect::<Vec<_>>(),
                            ),
                            guard: RouteGuard::compile(&route.name, &route.security),
                        });
                        router.insert(&route.hosts, &route.path_prefix, target);
                    }
                }
                ListenerView {
                    name: Arc::from(l.name.as_str()),
                    tls: l.tls,
                    redirect_https_port: if l.redirect_to_https {
                        https_port
                    } else {
                        None
                    },
                    hsts: if l.tls { hsts.clone() } else { None },
                    router,
                    trusted_proxies: trusted_proxies.clone(),
                }
            })
            .collect();

        let mut all: Vec<Arc<UpstreamRuntime>> = upstreams.into_values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            generation,
            listeners,
            upstreams: all,
            max_connections_per_ip: config.max_connections_per_ip,
        }
    }

    /// Every upstream, sorted by name.
    pub fn upstreams(&self) -> &[Arc<UpstreamRuntime>] {
        &self.upstreams
    }

    /// The view of a listener by name.
    pub fn listener(&self, name: &str) -> Option<&ListenerView> {
        self.listeners.iter().find(|l| &*l.name == name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::path::PathBuf;

    use super::*;
    use crate::config::model::{HostMatch, Listener, Route, Server, Tls, Upstream};

    fn listener(name: &str, port: u16, tls: bool, redirect: bool) -> Listener {
        Listener {
            name: name.into(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            tls,
            redirect_to_https: redirect,
            proxy_protocol: None,
            limits: Default::default(),
        }
    }

    fn route(name: &str, listener: Option<&str>, upstream: &str) -> Route {
        Route {
            name: name.into(),
            hosts: vec![HostMatch::Exact(format!("{name}.test"))],
            path_prefix: "/".into(),
            strip_prefix: false,
            listener: listener.map(str::to_string),
            upstream: upstream.into(),
            security: Default::default(),
        }
    }

    fn config(listeners: Vec<Listener>, routes: Vec<Route>) -> Config {
        let upstream = Upstream {
            name: "u".into(),
            servers: vec![
                Server {
                    address: "127.0.0.1:1".into(),
                    socket: SocketAddr::from(([127, 0, 0, 1], 1)),
                    weight: 1,
                    max_inflight: None,
                    drain: false,
                    models: None,
                },
                Server {
                    address: "127.0.0.1:2".into(),
                    socket: SocketAddr::from(([127, 0, 0, 1], 2)),
                    weight: 1,
                    max_inflight: None,
                    drain: false,
                    models: None,
                },
            ],
            balance: Default::default(),
            timeouts: Timeouts::default(),
            sticky: None,
            health: Health::default(),
            retries: 2,
            queue: Queue::default(),
            discovery: None,
            inference: None,
        };
        Config {
            source: PathBuf::from("test.yaml"),
            state_dir: PathBuf::from("/tmp"),
            workers: 1,
            listeners,
            admin: None,
            tls: Tls {
                hsts: Some(std::time::Duration::from_secs(60)),
                certificates: vec![],
                acme: vec![],
            },
            acme: Default::default(),
            routes,
            upstreams: BTreeMap::from([("u".to_string(), upstream)]),
            shutdown_grace: std::time::Duration::from_secs(1),
            log: Default::default(),
            trusted_proxies: Vec::new(),
            max_connections_per_ip: None,
            cluster: None,
        }
    }

    #[test]
    fn unbound_routes_serve_https_and_bound_ones_their_listener() {
        let cfg = config(
            vec![
                listener("http", 80, false, true),
                listener("https", 443, true, false),
                listener("internal", 8600, false, false),
            ],
            vec![
                route("a", None, "u"),
                route("b", Some("internal"), "u"),
                route("c", Some("http"), "u"),
            ],
        );
        let snap = Snapshot::compile(&cfg, 7, &Registry::default());
        assert_eq!(snap.generation, 7);
        let https = snap.listener("https").expect("https view");
        assert!(https.router.find("a.test", "/").is_some());
        assert!(https.router.find("b.test", "/").is_none());
        assert_eq!(
            https.hsts.as_ref().map(|v| v.as_bytes()),
            Some(&b"max-age=60"[..])
        );
        let internal = snap.listener("internal").expect("internal view");
        assert!(internal.router.find("b.test", "/").is_some());
        assert!(internal.hsts.is_none());
        let http = snap.listener("http").expect("http view");
        assert_eq!(http.redirect_https_port, Some(443));
        assert!(http.router.find("c.test", "/").is_some());
        assert!(http.router.find("a.test", "/").is_none());
    }

    #[test]
    fn without_https_unbound_routes_serve_http() {
        let cfg = config(
            vec![listener("http", 80, false, false)],
            vec![route("a", None, "u")],
        );
        let snap = Snapshot::compile(&cfg, 1, &Registry::default());
        let http = snap.listener("http").expect("http view");
        assert_eq!(http.redirect_https_port, None);
        assert!(http.router.find("a.test", "/x").is_some());
    }

    #[test]
    fn a_new_snapshot_reattaches_to_long_lived_state() {
        use crate::pool::{Outcome, RequestInfo};
        let cfg = config(
            vec![listener("http", 80, false, false)],
            vec![route("a", None, "u")],
        );
        let registry = Registry::default();
        let first = Snapshot::compile(&cfg, 1, &registry);
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
        let second = Snapshot::compile(&cfg, 2, &registry);
        let again = &second.upstreams()[0];
        assert!(Arc::ptr_eq(&upstream.pool, &again.pool));
        let inflight: u32 = again.status().servers.iter().map(|s| s.inflight).sum();
        assert_eq!(inflight, 1);
        drop(held);
        let inflight: u32 = again.status().servers.iter().map(|s| s.inflight).sum();
        assert_eq!(inflight, 0);
        // An upstream removed from the config is forgotten.
        let mut empty = cfg.clone();
        empty.upstreams.clear();
        empty.routes.clear();
        let _third = Snapshot::compile(&empty, 3, &registry);
        assert!(registry.get("u").is_none());
    }
}
