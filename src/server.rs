//! Daemon start-up: validated config → certificate store and first snapshot → one pingora
//! service per listener (plus admin) → run until a signal stops it.

use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::acme::http01::ChallengeTokens;
use crate::acme::AcmeManager;
use crate::admin::AdminApp;
use crate::config::model::Config;
use crate::proxy::Proxy;
use crate::runtime::{Snapshot, SnapshotStore};
use crate::tls::{build_index, CertIndex, CertStore};

/// Seconds a stopping daemon keeps serving requests in flight.
pub const DEFAULT_GRACE_PERIOD_SECS: u64 = 10;

/// Long-lived state that outlives any one configuration.
pub struct Shared {
    pub snapshots: Arc<SnapshotStore>,
    pub certs: Arc<CertStore>,
    pub challenges: Arc<ChallengeTokens>,
    /// Issues and renews ACME certificates; owns the cert index from start-up on: a reload
    /// calls `acme.apply(&new_config)`, which rebuilds and swaps the index.
    pub acme: Arc<AcmeManager>,
}

/// Builds the certificate index for a configuration's file certificates alone (the first is the
/// default), with the self-signed placeholder when none is configured. With ACME certificates,
/// use [`AcmeManager::apply`], which adds them.
pub fn build_cert_index(config: &Config) -> Result<CertIndex, String> {
    build_index(config, &Default::default())
}

/// Prepares the shared state for a configuration.
pub fn prepare(config: &Config) -> Result<Shared, String> {
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        format!(
            "cannot create state_dir {}: {e}",
            config.state_dir.display()
        )
    })?;
    let certs = Arc::new(CertStore::new(CertIndex::default()));
    let challenges = Arc::new(ChallengeTokens::default());
    let acme = Arc::new(AcmeManager::new(certs.clone(), challenges.clone())?);
    acme.apply(config)?;
    Ok(Shared {
        snapshots: Arc::new(SnapshotStore::new(Snapshot::compile(config, 1))),
        certs,
        challenges,
        acme,
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
        let mut service = http_proxy_service_with_name(&server.configuration, proxy, &name);
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
            HttpServer::new_app(AdminApp::new(shared.snapshots.clone())),
        );
        service.add_tcp(&admin.listen.to_string());
        server.add_service(service);
    }
    Ok(server)
}
