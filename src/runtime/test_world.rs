//! Small validated configurations for the runtime's unit tests: listeners, routes and one
//! upstream `u` with two loopback servers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::model::{
    Config, Health, HostMatch, Listener, Queue, Route, RouteAction, Server, Timeouts, Tls, Upstream,
};

pub fn listener(name: &str, port: u16, tls: bool, redirect: bool) -> Listener {
    Listener {
        name: name.into(),
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        tls,
        redirect_to_https: redirect,
        proxy_protocol: None,
        limits: Default::default(),
        client_auth: None,
    }
}

pub fn route(name: &str, listener: Option<&str>, upstream: &str) -> Route {
    Route {
        name: name.into(),
        hosts: vec![HostMatch::Exact(format!("{name}.test"))],
        path_prefix: "/".into(),
        strip_prefix: false,
        listener: listener.map(str::to_string),
        action: RouteAction::Upstream(upstream.into()),
        security: Default::default(),
        rules: Default::default(),
    }
}

pub fn config(listeners: Vec<Listener>, routes: Vec<Route>) -> Config {
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
                kv_events: None,
            },
            Server {
                address: "127.0.0.1:2".into(),
                socket: SocketAddr::from(([127, 0, 0, 1], 2)),
                weight: 1,
                max_inflight: None,
                drain: false,
                models: None,
                kv_events: None,
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
        tls: None,
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
        geoip: None,
        otel: None,
    }
}
