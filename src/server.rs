//! Daemon start-up: validated config → certificate store and first snapshot → one pingora
//! service per listener (plus admin) → control thread (reloads, readiness) → run until a signal
//! stops it.

use std::path::Path;
use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::RunArgs;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::model::Config;
use crate::lifecycle::probe::Endpoint;
use crate::lifecycle::{ActiveRequests, ControlPlane, Readiness, Signals};
use crate::monitor::{
    DnsDiscovery, GeoipWatcher, HealthChecker, HistorySampler, KvEventSubscriber, NodeScraper,
};
use crate::observe::connections::CountedConnections;
use crate::proxy::ProxyApp;
use crate::reload::Reloader;
use crate::runtime::Live;
use crate::security::gate::{ConnectionGate, GateSettings};
use crate::security::proxy_protocol::ProxyProtocol;

/// Seconds pingora's runtimes get to wind down after the grace period.
pub const DEFAULT_RUNTIME_SHUTDOWN_SECS: u64 = 1;

/// A listener's read buffer in front of the socket. pingora's default is 64 KiB per connection,
/// zeroed on accept and held for the connection's life (idle WebSockets included), though HTTP/1
/// reads go into pingora's own header and body buffers and TLS reads into rustls's record
/// buffer. Only a `proxy_protocol` listener gets one (4 KiB): the PROXY header is read a few
/// bytes at a time.
fn l4_buffers(proxy_protocol: bool) -> L4BufferSettings {
    let read = if proxy_protocol { 4 * 1024 } else { 0 };
    L4BufferSettings::new(read, pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE)
}

/// Idle upstream connections kept per worker thread, all servers together (pingora's default is
/// 128). Fewer than the requests in flight at a busy moment means that, once they end, the
/// surplus is closed and the next burst connects again: with 160 h2 streams in flight, 2% of
/// requests paid for a new connection at 128.
pub const UPSTREAM_POOL_PER_THREAD: usize = 1024;

/// What the process keeps besides the configuration's state: requests in flight (a graceful
/// stop waits for them) and readiness.
pub struct Process {
    pub live: Arc<Live>,
    pub active: Arc<ActiveRequests>,
    pub readiness: Arc<Readiness>,
}

/// Prepares the long-lived state for a configuration (generation 1 in force).
pub fn prepare(config: &Config) -> Result<Process, String> {
    Ok(Process {
        live: Live::start(config)?,
        active: Arc::new(ActiveRequests::default()),
        readiness: Arc::new(Readiness::default()),
    })
}

/// Builds the pingora server with one service per listener. Does not start it.
pub fn build(
    config: &Config,
    process: &Process,
    reloader: &Arc<Reloader>,
    upgrade: bool,
) -> Result<Server, String> {
    let live = &process.live;
    let state = &config.state_dir;
    let conf = ServerConf {
        threads: config.workers,
        grace_period_seconds: Some(config.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(DEFAULT_RUNTIME_SHUTDOWN_SECS),
        pid_file: state.join("ferrogate.pid").to_string_lossy().into_owned(),
        upgrade_sock: state.join("upgrade.sock").to_string_lossy().into_owned(),
        upstream_keepalive_pool_size: UPSTREAM_POOL_PER_THREAD,
        // Each worker thread runs its own single-threaded runtime and serves the connections
        // it accepted start to end, as HAProxy's and nginx's threads do: no cross-thread
        // queues, locks or wake-ups on the request path (8% less CPU per keep-alive request,
        // 15% per h2 request than the work-stealing runtime in benches/ab.py).
        work_stealing: false,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    // One connector for every listener; each worker thread keeps its own idle server connections.
    let connector = crate::proxy::connector(&server.configuration);
    for listener in &config.listeners {
        let app = ProxyApp::new(
            listener,
            live.clone(),
            process.active.clone(),
            connector.clone(),
        );
        let name = format!("listener {}", listener.name);
        let counted = CountedConnections::new(&live.observe.traffic, &listener.name, app);
        // PROXY protocol, limits and the TLS handshake all run in the gate, before HTTP parsing.
        let settings = GateSettings {
            proxy_protocol: listener.proxy_protocol.as_deref().map(ProxyProtocol::new),
            max_connections: listener.limits.max_connections,
            header_timeout: listener.limits.header_timeout,
        };
        let snapshots = live.snapshots.clone();
        let per_ip_max = Box::new(move || snapshots.load().max_connections_per_ip);
        let metrics = Some(live.security.clone());
        let mut gate = ConnectionGate::new(settings, per_ip_max, metrics, counted);
        if listener.tls {
            let acceptor = crate::tls::listener::acceptor_for(live.certs.clone(), listener)
                .map_err(|e| format!("TLS settings for {}: {e}", listener.name))?;
            gate = gate.with_tls(acceptor);
        }
        let mut service = Service::new(name, gate);
        let endpoint = ListenerConfig::tcp(listener.address.to_string())
            .l4_buffer(l4_buffers(listener.proxy_protocol.is_some()));
        service.endpoints().add_listener(endpoint);
        server.add_service(service);
    }

    let checker = HealthChecker::new(live.snapshots.clone());
    server.add_service(background_service("health checker", checker));
    let discovery = DnsDiscovery::new(live.snapshots.clone());
    server.add_service(background_service("dns discovery", discovery));
    let scraper = NodeScraper::new(live.snapshots.clone(), live.inference.clone());
    server.add_service(background_service("node scraper", scraper));
    let sampler = HistorySampler::new(live.clone());
    server.add_service(background_service("history sampler", sampler));
    let kv_events = KvEventSubscriber::new(live.snapshots.clone(), live.inference.clone());
    server.add_service(background_service("kv-event subscriber", kv_events));
    let geoip = GeoipWatcher::new(live.snapshots.clone());
    server.add_service(background_service("country database watcher", geoip));

    if let Some(admin) = &config.admin {
        let mut service = Service::new(
            "admin".to_string(),
            HttpServer::new_app(
                AdminApp::new(live.clone(), process.readiness.clone(), reloader.clone())
                    .allow(admin.allow.clone()),
            ),
        );
        service.add_tcp(&admin.listen.to_string());
        server.add_service(service);
    }
    Ok(server)
}

/// Runs the daemon for a configuration file until a signal ends it; returns only on a start-up
/// failure.
pub fn run(path: &Path, config: Config, upgrade: bool) -> Result<(), String> {
    if !upgrade {
        // An upgrade takes the running process's sockets over; a fresh start binds its own.
        let listeners = config
            .listeners
            .iter()
            .map(|l| (format!("listener {}", l.name), l.address));
        let admin = config.admin.iter().map(|a| ("admin".to_string(), a.listen));
        let addresses: Vec<(String, std::net::SocketAddr)> = listeners.chain(admin).collect();
        crate::lifecycle::addresses::check_free(
            addresses
                .iter()
                .map(|(name, address)| (name.as_str(), *address)),
        )?;
    }
    let process = prepare(&config)?;
    let reloader = Arc::new(Reloader::new(path, config.clone(), process.live.clone()));
    let daemon = build(&config, &process, &reloader, upgrade)?;
    let mut endpoints: Vec<Endpoint> = config
        .listeners
        .iter()
        .map(|l| Endpoint {
            address: l.address,
            tls: l.tls,
        })
        .collect();
    endpoints.extend(config.admin.as_ref().map(|a| Endpoint {
        address: a.listen,
        tls: false,
    }));
    ControlPlane {
        reloader,
        readiness: process.readiness.clone(),
        endpoints,
        pid_file: config.state_dir.join("ferrogate.pid"),
    }
    .start()?;
    for listener in &config.listeners {
        tracing::info!(
            listener = %listener.name,
            address = %listener.address,
            tls = listener.tls,
            "listening"
        );
    }
    let signals = Signals {
        active: process.active.clone(),
        grace: config.shutdown_grace,
        upgrade_command: upgrade_command(path),
        phases: parking_lot::Mutex::new(Some(daemon.watch_execution_phase())),
    };
    daemon.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    crate::lifecycle::exit(0)
}

/// The command line of the process that takes over on SIGUSR2: this binary, same configuration.
fn upgrade_command(path: &Path) -> Vec<String> {
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "ferrogate".into());
    vec![
        exe,
        "run".into(),
        "--config".into(),
        path.to_string_lossy().into_owned(),
        "--upgrade".into(),
    ]
}
