//! Daemon start-up: validated config → certificate store and first snapshot → one pingora
//! service per listener (plus admin) → run until a signal stops it.

use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::acme::http01::ChallengeTokens;
use crate::admin::AdminApp;
use crate::config::model::Config;
use crate::observe::connections::CountedConnections;
use crate::proxy::Proxy;
use crate::runtime::{Snapshot, SnapshotStore};
use crate::tls::{placeholder, CertIndex, CertStore};

/// Seconds a stopping daemon keeps serving requests in flight.
pub const DEFAULT_GRACE_PERIOD_SECS: u64 = 10;

/// Long-lived state that outlives any one configuration.
pub struct Shared {
    pub snapshots: Arc<SnapshotStore>,
    pub certs: Arc<CertStore>,
    pub challenges: Arc<ChallengeTokens>,
}

/// Builds the certificate index for a configuration: configured certificates in file order (the
/// first is the default), and the self-signed placeholder when none is configured.
pub fn build_cert_index(config: &Config) -> Result<CertIndex, String> {
    let mut index = CertIndex::default();
    for cert in &config.tls.certificates {
        index.add(&cert.dns_names, cert.key.clone());
    }
    let serves_tls = config.listeners.iter().any(|l| l.tls);
    if serves_tls && index.is_empty() {
        let (key, made) = placeholder::load_or_create(&config.state_dir)?;
        if made {
            tracing::info!(
                state_dir = %config.state_dir.display(),
                "made a self-signed placeholder certificate (no certificate configured)"
            );
        }
        index.set_fallback(key);
    }
    Ok(index)
}

/// Prepares the shared state for a configuration.
pub fn prepare(config: &Config) -> Result<Shared, String> {
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        format!(
            "cannot create state_dir {}: {e}",
            config.state_dir.display()
        )
    })?;
    let index = build_cert_index(config)?;
    crate::observe::board::config_loaded(config, 1);
    Ok(Shared {
        snapshots: Arc::new(SnapshotStore::new(Snapshot::compile(config, 1))),
        certs: Arc::new(CertStore::new(index)),
        challenges: Arc::new(ChallengeTokens::default()),
    })
}

/// Builds the pingora server with one service per listener. Does not start it.
pub fn build(config: &Config, shared: &Shared) -> Result<Server, String> {
    let state = &config.state_dir;
    let conf = ServerConf {
        threads: config.workers,
        max_retries: crate::proxy::DEFAULT_MAX_TRIES,
        grace_period_seconds: Some(DEFAULT_GRACE_PERIOD_SECS),
        graceful_shutdown_timeout_seconds: Some(DEFAULT_GRACE_PERIOD_SECS),
        pid_file: state.join("ferrogate.pid").to_string_lossy().into_owned(),
        upgrade_sock: state.join("upgrade.sock").to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    for listener in &config.listeners {
        let proxy = Proxy::new(
            &listener.name,
            listener.tls,
            shared.snapshots.clone(),
            shared.challenges.clone(),
        );
        let name = format!("listener {}", listener.name);
        let app = CountedConnections::new(&listener.name, http_proxy(&server.configuration, proxy));
        let mut service = Service::new(name, app);
        let address = listener.address.to_string();
        if listener.tls {
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| format!("TLS settings for {}: {e}", listener.name))?;
            settings.set_cert_resolver(shared.certs.clone());
            settings.enable_h2();
            service.add_tls_with_settings(&address, None, settings);
        } else {
            service.add_tcp(&address);
        }
        server.add_service(service);
    }

    if let Some(admin) = &config.admin {
        let mut service = Service::new(
            "admin".to_string(),
            HttpServer::new_app(AdminApp::new(shared.snapshots.clone()).allow(admin.allow.clone())),
        );
        service.add_tcp(&admin.listen.to_string());
        server.add_service(service);
    }
    Ok(server)
}
