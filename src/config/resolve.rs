//! The validated draft → the [`Config`] the daemon runs: everything the configuration needs from
//! outside its file. Upstream host names are looked up in DNS; certificate, key, key-digest and
//! users files are read and parsed; CA bundles, client certificates and the country database
//! are read for TLS with peers and `countries`; secret and CA files are checked; the core count and the host
//! name fill their defaults. A failure is reported like a validation error, at the key that named
//! the file or host.

mod addresses;
mod api_keys;
mod basic_auth;
mod certificates;
mod checked_files;
mod geoip;
mod peer_tls;

#[cfg(test)]
mod tests;

use super::draft::{Draft, DraftCluster, DraftRoute};
use super::model::{Cluster, Config, Route, Tls};
use super::report::Report;

/// The instance name of a cluster member whose host name cannot be read.
const FALLBACK_INSTANCE_NAME: &str = "ferrogate";

/// Completes `draft`, reporting every look-up that fails into `report`. The result is whole only
/// when `report` holds no errors; otherwise it is a best effort to be thrown away.
pub(super) fn resolve(draft: Draft, report: &mut Report) -> Config {
    for file in &draft.checked_files {
        checked_files::check(file, report);
    }
    let certificates = draft
        .tls
        .certificates
        .iter()
        .filter_map(|files| certificates::load(files, report))
        .collect();
    let mut system_roots = peer_tls::SystemRoots::default();
    let upstreams = draft
        .upstreams
        .into_iter()
        .map(|(name, mut upstream)| {
            let tls = upstream.tls.take();
            let mut resolved = addresses::resolve_upstream(upstream, report);
            resolved.tls =
                tls.and_then(|tls| peer_tls::upstream_tls(tls, &mut system_roots, report));
            (name, resolved)
        })
        .collect();
    let mut listeners = draft.listeners;
    for auth in draft.client_auths {
        let name = auth.listener.clone();
        let resolved = peer_tls::client_auth(auth, report);
        if let Some(listener) = listeners.iter_mut().find(|l| l.name == name) {
            listener.client_auth = resolved;
        }
    }
    let geoip = draft.geoip.and_then(|geoip| geoip::load(geoip, report));
    let routes = draft
        .routes
        .into_iter()
        .map(|route| resolve_route(route, report))
        .collect();
    Config {
        source: draft.source,
        state_dir: draft.state_dir,
        workers: draft.workers.unwrap_or_else(default_workers),
        listeners,
        admin: draft.admin,
        tls: Tls {
            hsts: draft.tls.hsts,
            certificates,
            acme: draft.tls.acme,
        },
        acme: draft.acme,
        routes,
        upstreams,
        shutdown_grace: draft.shutdown_grace,
        log: draft.log,
        trusted_proxies: draft.trusted_proxies,
        max_connections_per_ip: draft.max_connections_per_ip,
        cluster: draft.cluster.map(resolve_cluster),
        geoip,
        otel: draft.otel,
    }
}

fn resolve_route(draft: DraftRoute, report: &mut Report) -> Route {
    let mut route = draft.route;
    route.security.api_keys = draft
        .api_keys
        .and_then(|keys| api_keys::resolve(keys, report));
    route.security.basic_auth = draft
        .basic_auth
        .and_then(|auth| basic_auth::resolve(auth, report));
    route
}

fn resolve_cluster(draft: DraftCluster) -> Cluster {
    Cluster {
        name: draft.name.unwrap_or_else(host_name),
        redis: draft.redis,
        lock_ttl: draft.lock_ttl,
        sync_interval: draft.sync_interval,
        timeout: draft.timeout,
    }
}

/// One worker per core the process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The host name, or [`FALLBACK_INSTANCE_NAME`] when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| FALLBACK_INSTANCE_NAME.to_string())
}
