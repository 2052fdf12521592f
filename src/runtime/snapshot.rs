//! The immutable compiled world: per-listener routing tables pointing at compiled upstreams.
//! Built completely from a validated [`Config`] before it is swapped in; never mutated after.
//! Compiling only looks the long-lived state up ([`Live`]: upstream pools, route tables, route
//! observers, server stats, the country database): what it does not find it makes anew, and
//! those new pieces are kept only when the snapshot commits, so compiling a snapshot that is
//! never swapped in changes nothing.
//!
//! Each route target carries its compiled request rules; the request path uses them in this
//! order: [`Router::find_with`] with [`RouteTarget::matches`], the route's guard, then
//! [`RouteTarget::refusals`], then [`RouteTarget::answer`] (a route that answers itself) or
//! [`RouteTarget::rewrite`] and [`RouteTarget::request_headers`] toward the upstream (with
//! [`UpstreamRuntime::tls`]), and [`RouteTarget::response_headers`] on the way back.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;

use super::Live;
use crate::cluster::Cluster;
use crate::config::model::{
    Balance, Cidr, Config, Discovery, Health, Inference, Queue, Rewrite, Route, Sticky, Timeouts,
    LISTENER_HTTP, LISTENER_HTTPS,
};
use crate::geoip::GeoipHandle;
use crate::inference::metrics::InferenceMetrics;
use crate::observe::servers::ServerStats;
use crate::observe::RouteObserver;
use crate::otel::Pipeline;
use crate::pool::select::Rules;
use crate::pool::{planned_addresses, UpstreamPool, UpstreamStatus};
use crate::routing::answer::EdgeAnswer;
use crate::routing::conditions::{RequestFacts, RequestMatch};
use crate::routing::headers::HeaderRuleSet;
use crate::routing::rewrite::PathRewrite;
use crate::routing::Router;
use crate::security::refuse::RouteRefusals;
use crate::security::{GuardContext, RouteGuard};
use crate::tls::upstream::ServerTls;

/// Everything the request path reads for one configuration generation.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful load.
    pub generation: u64,
    listeners: Vec<ListenerView>,
    /// Every upstream, by name.
    upstreams: Vec<Arc<UpstreamRuntime>>,
    /// Every route target (one per route and listener it serves on).
    targets: Vec<Arc<RouteTarget>>,
    /// `max_connections_per_ip`, read by each new connection (so a reload changes it).
    pub max_connections_per_ip: Option<u32>,
    /// The cluster this configuration runs with.
    pub cluster: Option<Arc<Cluster>>,
    /// The country database the routes' `countries` look up (long-lived; the watcher reloads it).
    pub geoip: Option<Arc<GeoipHandle>>,
    /// Where request spans go (`otel:`); `None` = no traces. [`Live::prepare`] sets it.
    pub otel: Option<Arc<Pipeline>>,
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
    /// Where the route forwards. A route that answers itself ([`RouteTarget::answer`]) has a
    /// stand-in with no servers here, never used.
    pub upstream: Arc<UpstreamRuntime>,
    /// Metric handles and server counters for this route, resolved once here.
    pub observer: Arc<RouteObserver>,
    /// Access lists and rate limit; `None` when the route sets neither.
    pub guard: Option<Arc<RouteGuard>>,
    /// `match`: `None` takes every request its host and path fit.
    pub matcher: Option<RequestMatch>,
    /// `deny_user_agents` and `countries` (403).
    pub refusals: Option<RouteRefusals>,
    /// `redirect` or `respond`: answered at the edge, never forwarded.
    pub answer: Option<EdgeAnswer>,
    /// `rewrite` (or `strip_prefix`) of the path sent upstream.
    pub rewrite: Option<PathRewrite>,
    /// `headers.request`, applied after ferrogate's own forwarding headers.
    pub request_headers: Option<HeaderRuleSet>,
    /// `headers.response`, applied after ferrogate's own response headers.
    pub response_headers: Option<HeaderRuleSet>,
}

impl RouteTarget {
    /// Whether the route takes a request with these facts (its `match`, if any).
    pub fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        self.matcher.as_ref().is_none_or(|m| m.matches(facts))
    }
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
    /// https to the servers (`tls:`): for the request path's peers, the health checker and the
    /// scraper; `None` = plain HTTP.
    pub tls: Option<Arc<ServerTls>>,
    /// Where inference decisions and timings are counted (inference upstreams).
    pub inference_metrics: Option<Arc<InferenceMetrics>>,
    /// The pool's member addresses when this snapshot was compiled (the route observers'
    /// servers).
    pub addresses: Vec<Arc<str>>,
    /// Each of those servers' stats (kept ones, or new ones kept when the snapshot commits),
    /// shared by every route to this upstream.
    pub server_stats: Vec<Arc<ServerStats>>,
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
    /// Nothing: no listener, no upstream (before the first configuration commits).
    pub fn empty() -> Self {
        Self {
            generation: 0,
            listeners: Vec::new(),
            upstreams: Vec::new(),
            targets: Vec::new(),
            max_connections_per_ip: None,
            cluster: None,
            geoip: None,
            otel: None,
        }
    }

    /// Compiles a validated configuration as `generation`, running with `cluster`. Every
    /// upstream names its long-lived pool in `live` (a new, unkept one for a new upstream);
    /// route guards and observers reuse what `live` keeps when their settings are unchanged.
    /// Validation already guaranteed every reference, so compilation cannot fail on user input.
    pub fn compile(
        config: &Config,
        generation: u64,
        live: &Live,
        cluster: Option<&Arc<Cluster>>,
    ) -> Self {
        let upstreams: HashMap<&str, Arc<UpstreamRuntime>> = config
            .upstreams
            .values()
            .map(|u| {
                let pool = live.pools.get_or_new(&u.name);
                let addresses = planned_addresses(&pool, u);
                let server_stats = addresses
                    .iter()
                    .map(|a| live.observe.servers.get(&u.name, a).unwrap_or_default())
                    .collect();
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
                    tls: u.tls.as_ref().map(|tls| Arc::new(ServerTls::compile(tls))),
                    inference_metrics: u.inference.as_ref().map(|_| live.inference.clone()),
                    addresses,
                    server_stats,
                    pool,
                };
                (u.name.as_str(), Arc::new(compiled))
            })
            .collect();
        let guards = GuardContext {
            tables: &live.route_tables,
            cluster,
            metrics: Some(&live.security),
        };

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
        let geoip = config
            .geoip
            .as_ref()
            .map(|g| live.geoip.handle_for(&g.database, &g.loaded));
        let mut targets = Vec::new();
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
                    let upstream = match route.upstream() {
                        Some(name) => match upstreams.get(name) {
                            Some(upstream) => upstream.clone(),
                            None => continue,
                        },
                        None => answering_stand_in(),
                    };
                    if serves_here {
                        let target = Arc::new(compile_target(
                            route,
                            upstream,
                            live,
                            guards,
                            geoip.as_ref(),
                        ));
                        router.insert(&route.hosts, &route.path_prefix, target.clone());
                        targets.push(target);
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
            targets,
            max_connections_per_ip: config.max_connections_per_ip,
            cluster: cluster.cloned(),
            geoip,
            otel: None,
        }
    }

    /// Every route target of every listener.
    pub fn targets(&self) -> &[Arc<RouteTarget>] {
        &self.targets
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

/// The compiled target of `route` sending to `upstream`.
fn compile_target(
    route: &Route,
    upstream: Arc<UpstreamRuntime>,
    live: &Live,
    guards: GuardContext<'_>,
    geoip: Option<&Arc<GeoipHandle>>,
) -> RouteTarget {
    let rules = &route.rules;
    RouteTarget {
        name: Arc::from(route.name.as_str()),
        path_prefix: route.path_prefix.clone(),
        strip_prefix: route.strip_prefix,
        // Servers found later by discovery get route-level metrics only.
        observer: observer_for(live, &route.name, &upstream),
        upstream,
        guard: RouteGuard::compile(&route.name, &route.security, guards),
        matcher: rules.matcher.as_ref().map(RequestMatch::compile),
        refusals: RouteRefusals::compile(rules, geoip),
        answer: EdgeAnswer::compile(&route.action),
        rewrite: match (&rules.rewrite, route.strip_prefix) {
            (Some(rewrite), _) => Some(PathRewrite::compile(rewrite, &route.path_prefix)),
            (None, true) => Some(PathRewrite::compile(
                &Rewrite::Prefix("/".into()),
                &route.path_prefix,
            )),
            (None, false) => None,
        },
        request_headers: HeaderRuleSet::compile(&rules.request_headers),
        response_headers: HeaderRuleSet::compile(&rules.response_headers),
    }
}

/// The upstream of a route that answers itself: no servers, in no registry (a request that
/// reached it would find no server).
fn answering_stand_in() -> Arc<UpstreamRuntime> {
    Arc::new(UpstreamRuntime {
        name: Arc::from(""),
        balance: Balance::default(),
        sticky: None,
        health: Health::default(),
        retries: 0,
        queue: Queue::default(),
        discovery: None,
        timeouts: Timeouts::default(),
        inference: None,
        inference_metrics: None,
        tls: None,
        addresses: Vec::new(),
        server_stats: Vec::new(),
        pool: Arc::new(UpstreamPool::new("")),
    })
}

/// The observer `live` keeps for `route` sending to `upstream` when it watches the same servers,
/// else a new one (kept when the snapshot commits).
fn observer_for(live: &Live, route: &str, upstream: &UpstreamRuntime) -> Arc<RouteObserver> {
    let observe = &live.observe;
    observe
        .observers
        .find(route, &upstream.name, &upstream.addresses)
        .unwrap_or_else(|| {
            Arc::new(RouteObserver::new(
                &observe.traffic,
                route,
                &upstream.name,
                upstream.addresses.iter().zip(&upstream.server_stats),
            ))
        })
}

#[cfg(test)]
mod tests_rules;

#[cfg(test)]
mod tests {
    use super::super::test_world::{config, listener, route};
    use super::*;

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
        let live = Live::new().expect("live state");
        let snap = Snapshot::compile(&cfg, 7, &live, None);
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
        assert_eq!(snap.targets().len(), 3);
    }

    #[test]
    fn without_https_unbound_routes_serve_http() {
        let cfg = config(
            vec![listener("http", 80, false, false)],
            vec![route("a", None, "u")],
        );
        let live = Live::new().expect("live state");
        let snap = Snapshot::compile(&cfg, 1, &live, None);
        let http = snap.listener("http").expect("http view");
        assert_eq!(http.redirect_https_port, None);
        assert!(http.router.find("a.test", "/x").is_some());
    }
}
