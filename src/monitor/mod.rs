//! Background services that watch the upstream servers and write what they learn into the
//! long-lived pools: active health checks ([`health`]), inference servers' own models and
//! metrics ([`scrape`]), engines' KV-cache events and prompt tokens ([`kv_events`]), DNS
//! re-resolution of upstream names ([`discovery`]), the reload of the country database when its
//! file changes ([`geoip`]); and the history sampler ([`sampler`]), which reads the metric
//! families and pools into the status page's history. Each reads the
//! snapshot in force every round ([`periodic`]), so a reload changes their work at once; the
//! snapshot names the pools they write to, never a service.

pub mod discovery;
pub mod geoip;
pub mod health;
pub mod kv_events;
pub mod periodic;
pub mod sampler;
pub mod scrape;

pub use discovery::DnsDiscovery;
pub use geoip::GeoipWatcher;
pub use health::HealthChecker;
pub use kv_events::KvEventSubscriber;
pub use sampler::HistorySampler;
pub use scrape::NodeScraper;
