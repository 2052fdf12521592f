//! The one integration test binary: starts the real `ferrogate` daemon on loopback ports against
//! real backend servers and checks what clients and backends see.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod backends;
mod chromium;
mod client;
mod harness;

mod balance_support;
mod test_pki;
mod uvicorn_env;

mod balance;
mod balance_discovery;
mod balance_queue;
mod balance_reload;
mod check_cmd;
mod cluster;
mod cluster_env;
mod dashboard;
mod edge_rules;
mod edge_tls;
mod errors;
mod health;
mod health_active;
mod health_inflight;
mod http2;
mod http_listener;
mod import_haproxy;
mod import_haproxy_parity;
mod inference;
mod inference_cost;
mod inference_kv_events;
mod inference_scrape;
mod lifecycle;
mod malformed;
mod observability;
mod observability_history;
mod observability_logs;
mod observability_reload;
// Kills a `ferrogate demo-backend` process.
#[cfg(feature = "demo")]
mod observability_status;
mod otel;
mod packaging;
mod pipelining;
mod reload;
mod routing;
mod runtime_api;
mod security;
mod security_auth;
mod security_client_addr;
mod security_limits;
mod security_listener;
mod security_malformed;
mod security_proxy;
mod security_quota;
mod sticky;
mod streaming;
mod tls;
mod upstream_reuse;
mod upstream_tls;

mod acme_account;
mod acme_dns01;
mod acme_dns_api;
mod acme_env;
mod acme_http01;
mod acme_reload;
