//! The immutable compiled world: per-listener routing tables pointing at compiled upstreams.
//! Built completely from a validated [`Config`] before it is swapped in; never mutated after.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;

use crate::balance::RoundRobin;
use crate::config::model::{Config, Timeouts, LISTENER_HTTP, LISTENER_HTTPS};
use crate::routing::Router;

/// Everything the proxy hooks read for one configuration generation.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful load.
    pub generation: u64,
    listeners: Vec<ListenerView>,
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
}

/// The routing decision's result: which route matched and where it sends the request.
#[derive(Debug)]
pub struct RouteTarget {
    pub name: Arc<str>,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub upstream: Arc<UpstreamRuntime>,
}

/// A compiled upstream.
#[derive(Debug)]
pub struct UpstreamRuntime {
    pub name: Arc<str>,
    pub servers: Vec<ServerRuntime>,
    weights: Vec<u32>,
    round_robin: RoundRobin,
    pub timeouts: Timeouts,
}

/// A compiled backend server.
#[derive(Debug, Clone)]
pub struct ServerRuntime {
    /// The address as configured; its identity in logs.
    pub address: Arc<str>,
    pub socket: SocketAddr,
}

impl UpstreamRuntime {
    /// The next server by weighted round robin.
    pub fn pick(&self) -> Option<&ServerRuntime> {
        self.round_robin
            .pick(&self.weights)
            .and_then(|i| self.servers.get(i))
    }
}

impl Snapshot {
    /// Compiles a validated configuration. Validation already guaranteed every reference, so
    /// compilation cannot fail on user input.
    pub fn compile(config: &Config, generation: u64) -> Self {
        let upstreams: HashMap<&str, Arc<UpstreamRuntime>> = config
            .upstreams
            .values()
            .map(|u| {
                let compiled = UpstreamRuntime {
                    name: Arc::from(u.name.as_str()),
                    servers: u
                        .servers
                        .iter()
                        .map(|s| ServerRuntime {
                            address: Arc::from(s.address.as_str()),
                            socket: s.socket,
                        })
                        .collect(),
                    weights: u.servers.iter().map(|s| s.weight).collect(),
                    round_robin: RoundRobin::default(),
                    timeouts: u.timeouts,
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
                }
            })
            .collect();

        Self {
            generation,
            listeners,
        }
    }

    /// The view of a listener by name.
    pub fn listener(&self, name: &str) -> Option<&ListenerView> {
        self.listeners.iter().find(|l| &*l.name == name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::config::model::{HostMatch, Listener, Route, Server, Tls, Upstream};

    fn listener(name: &str, port: u16, tls: bool, redirect: bool) -> Listener {
        Listener {
            name: name.into(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            tls,
            redirect_to_https: redirect,
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
                },
                Server {
                    address: "127.0.0.1:2".into(),
                    socket: SocketAddr::from(([127, 0, 0, 1], 2)),
                    weight: 1,
                },
            ],
            balance: Default::default(),
            timeouts: Timeouts::default(),
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
        let snap = Snapshot::compile(&cfg, 7);
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
        let snap = Snapshot::compile(&cfg, 1);
        let http = snap.listener("http").expect("http view");
        assert_eq!(http.redirect_https_port, None);
        assert!(http.router.find("a.test", "/x").is_some());
    }

    #[test]
    fn upstream_round_robin_alternates() {
        let cfg = config(
            vec![listener("http", 80, false, false)],
            vec![route("a", None, "u")],
        );
        let snap = Snapshot::compile(&cfg, 1);
        let rule = snap
            .listener("http")
            .and_then(|l| l.router.find("a.test", "/"))
            .expect("route");
        let picks: Vec<_> = (0..4)
            .filter_map(|_| rule.target.upstream.pick().map(|s| s.socket.port()))
            .collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
    }
}
