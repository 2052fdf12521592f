//! One reading for the history ([`Reading`]): the cumulative request, error, latency, TTFT,
//! chunk, prefix-cache and decision counts summed from the gathered metric families for what
//! the configuration names, plus each inference node's in-flight count and last scraped load.
//! Pure: families and pool facts in, a reading out.

use std::collections::BTreeSet;
use std::time::Instant;

use prometheus::proto::{Metric, MetricFamily};

use crate::inference::signals::Load;
use crate::observe::history::delta::Buckets;
use crate::observe::history::point::{NodeReading, Reading, TrafficReading};

/// The families read (names as their owners register them; a unit test checks they exist).
pub const REQUESTS: &str = "ferrogate_requests_total";
pub const REQUEST_DURATION: &str = "ferrogate_request_duration_seconds";
pub const UPSTREAM_RESPONSE: &str = "ferrogate_upstream_response_seconds";
pub const CONNECT_ERRORS: &str = "ferrogate_upstream_connect_errors_total";
pub const TTFT: &str = "ferrogate_inference_ttft_seconds";
pub const INTER_TOKEN: &str = "ferrogate_inference_inter_token_seconds";
pub const PREFIX_HITS: &str = "ferrogate_inference_observed_prefix_hit_tokens_total";
pub const PREFIX_QUERIES: &str = "ferrogate_inference_observed_prefix_query_tokens_total";
pub const DECISIONS: &str = "ferrogate_inference_decisions_total";

/// Every family read.
const FAMILIES: [&str; 9] = [
    REQUESTS,
    REQUEST_DURATION,
    UPSTREAM_RESPONSE,
    CONNECT_ERRORS,
    TTFT,
    INTER_TOKEN,
    PREFIX_HITS,
    PREFIX_QUERIES,
    DECISIONS,
];

/// The status class counted as an error.
const SERVER_ERROR_CLASS: &str = "5xx";

/// An inference node as its pool sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeNow {
    pub upstream: String,
    pub address: String,
    pub in_flight: u32,
    /// Its last metrics reading, whatever its age.
    pub load: Option<Load>,
}

/// What the configuration in force names.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub routes: BTreeSet<String>,
    pub upstreams: BTreeSet<String>,
    /// Inference upstreams (their decisions are read).
    pub inference: BTreeSet<String>,
    pub nodes: Vec<NodeNow>,
}

fn label<'m>(metric: &'m Metric, name: &str) -> Option<&'m str> {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

fn buckets(metric: &Metric) -> Buckets {
    let histogram = metric.get_histogram();
    Buckets {
        bounds: histogram
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect(),
        count: histogram.get_sample_count(),
    }
}

/// Sums the families into a reading of everything `watched` names, taken at `at`.
pub fn read(families: &[MetricFamily], watched: &Watched, at: Instant) -> Reading {
    let mut reading = Reading::new(at);
    for route in &watched.routes {
        reading
            .routes
            .insert(route.clone(), TrafficReading::default());
    }
    for upstream in &watched.upstreams {
        reading
            .upstreams
            .insert(upstream.clone(), TrafficReading::default());
    }
    for node in &watched.nodes {
        let load = node.load.as_ref();
        reading.nodes.insert(
            (node.upstream.clone(), node.address.clone()),
            NodeReading {
                running: load.map(|l| l.running),
                waiting: load.map(|l| l.waiting),
                kv_usage: load.and_then(|l| l.kv_usage),
                in_flight: f64::from(node.in_flight),
                ..NodeReading::default()
            },
        );
    }
    for family in families {
        let name = family.name();
        if !FAMILIES.contains(&name) {
            continue;
        }
        for metric in family.get_metric() {
            add(&mut reading, watched, name, metric);
        }
    }
    reading
}

/// Adds one child of family `name` to whatever it counts for.
fn add(reading: &mut Reading, watched: &Watched, name: &str, metric: &Metric) {
    let route = match name {
        REQUESTS | REQUEST_DURATION => {
            label(metric, "route").and_then(|r| reading.routes.get_mut(r))
        }
        _ => None,
    };
    match name {
        REQUESTS => {
            let value = metric.get_counter().get_value();
            let error = label(metric, "class") == Some(SERVER_ERROR_CLASS);
            if let Some(route) = route {
                route.requests += value;
                route.errors += if error { value } else { 0.0 };
            }
            if let Some(upstream) =
                label(metric, "upstream").and_then(|u| reading.upstreams.get_mut(u))
            {
                upstream.requests += value;
                upstream.errors += if error { value } else { 0.0 };
            }
        }
        CONNECT_ERRORS => {
            if let Some(upstream) =
                label(metric, "upstream").and_then(|u| reading.upstreams.get_mut(u))
            {
                upstream.errors += metric.get_counter().get_value();
            }
        }
        REQUEST_DURATION => {
            if let Some(route) = route {
                route.latency.merge(&buckets(metric));
            }
        }
        UPSTREAM_RESPONSE => {
            if let Some(upstream) =
                label(metric, "upstream").and_then(|u| reading.upstreams.get_mut(u))
            {
                upstream.latency.merge(&buckets(metric));
            }
        }
        TTFT | INTER_TOKEN | PREFIX_HITS | PREFIX_QUERIES => {
            let key = (
                label(metric, "upstream").unwrap_or_default().to_string(),
                label(metric, "server").unwrap_or_default().to_string(),
            );
            let Some(node) = reading.nodes.get_mut(&key) else {
                return;
            };
            match name {
                TTFT => {
                    let ttft = buckets(metric);
                    node.chunks += ttft.count as f64;
                    node.ttft.merge(&ttft);
                }
                INTER_TOKEN => node.chunks += metric.get_histogram().get_sample_count() as f64,
                PREFIX_HITS => {
                    *node.prefix_hits.get_or_insert(0.0) += metric.get_counter().get_value();
                }
                _ => *node.prefix_queries.get_or_insert(0.0) += metric.get_counter().get_value(),
            }
        }
        DECISIONS => {
            let (Some(upstream), Some(reason)) =
                (label(metric, "upstream"), label(metric, "reason"))
            else {
                return;
            };
            if watched.inference.contains(upstream) {
                *reading
                    .decisions
                    .entry((upstream.to_string(), reason.to_string()))
                    .or_default() += metric.get_counter().get_value();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inference::metrics::InferenceMetrics;
    use crate::observe::servers::ServerStatsRegistry;
    use crate::observe::{Metrics, TrafficMetrics};

    fn watched() -> Watched {
        Watched {
            routes: ["chat".to_string(), "api".to_string()].into(),
            upstreams: ["owui".to_string(), "gpu".to_string()].into(),
            inference: ["gpu".to_string()].into(),
            nodes: vec![NodeNow {
                upstream: "gpu".into(),
                address: "10.0.0.9:8000".into(),
                in_flight: 3,
                load: Some(Load {
                    waiting: 1.0,
                    running: 2.0,
                    kv_usage: Some(0.5),
                    prefix_hit_tokens: None,
                    prefix_query_tokens: None,
                    cache_tokens: None,
                }),
            }],
        }
    }

    #[test]
    fn sums_the_children_of_what_the_configuration_names() {
        let metrics = Metrics::new().expect("definitions");
        let traffic = TrafficMetrics::register(&metrics, Arc::new(ServerStatsRegistry::default()))
            .expect("traffic");
        let inference = InferenceMetrics::register(&metrics).expect("inference");
        let chat_a = traffic
            .server_handles(Some("chat"), Some("owui"), Some("10.0.0.1:80"))
            .expect("handles");
        let chat_b = traffic
            .server_handles(Some("chat"), Some("owui"), Some("10.0.0.2:80"))
            .expect("handles");
        chat_a.requests[1].inc_by(7);
        chat_b.requests[4].inc_by(2);
        chat_b
            .server
            .as_ref()
            .expect("server")
            .connect_errors
            .inc_by(3);
        chat_a
            .server
            .as_ref()
            .expect("server")
            .upstream_duration
            .observe(0.02);
        chat_b
            .server
            .as_ref()
            .expect("server")
            .upstream_duration
            .observe(0.2);
        traffic
            .route_handles(Some("chat"))
            .expect("route")
            .request_duration
            .observe(0.03);
        // A route the configuration no longer names is not read.
        traffic
            .server_handles(Some("old"), Some("owui"), Some("10.0.0.1:80"))
            .expect("handles")
            .requests[1]
            .inc_by(100);
        for model in ["llama", "qwen"] {
            let handles = inference
                .handles("gpu", "10.0.0.9:8000", model)
                .expect("handles");
            handles.ttft.observe(0.2);
            handles.inter_chunk.observe(0.01);
            handles.inter_chunk.observe(0.01);
        }
        inference.decision("gpu", "10.0.0.9:8000", "cache_aware", "prefix_hit", 0);
        inference.decision("gpu", "10.0.0.9:8000", "least_inflight", "prefix_hit", 0);
        inference.decision("gpu", "10.0.0.9:8000", "cache_aware", "least_load", 0);
        let load = |hits, queries| Load {
            waiting: 0.0,
            running: 0.0,
            kv_usage: None,
            prefix_hit_tokens: Some(hits),
            prefix_query_tokens: Some(queries),
            cache_tokens: None,
        };
        inference.reading(
            "gpu",
            "10.0.0.9:8000",
            &load(10.0, 40.0),
            Some(&load(0.0, 0.0)),
        );

        let families = metrics.gather();
        // Every family read is registered under the name read.
        for name in FAMILIES {
            assert!(
                families.iter().any(|f| f.name() == name),
                "no family {name}"
            );
        }
        let at = Instant::now();
        let reading = read(&families, &watched(), at);
        assert_eq!(reading.at, at);
        let chat = &reading.routes["chat"];
        assert_eq!((chat.requests, chat.errors), (9.0, 2.0));
        assert_eq!(chat.latency.count, 1);
        assert_eq!(reading.routes["api"], TrafficReading::default());
        assert!(!reading.routes.contains_key("old"));
        let owui = &reading.upstreams["owui"];
        assert_eq!(owui.requests, 109.0, "every route to the upstream counts");
        assert_eq!(
            owui.errors, 5.0,
            "5xx answers plus failed connection attempts"
        );
        assert_eq!(owui.latency.count, 2);
        let node = &reading.nodes[&("gpu".to_string(), "10.0.0.9:8000".to_string())];
        assert_eq!(node.ttft.count, 2, "summed over models");
        assert_eq!(node.chunks, 6.0, "first chunks plus the gaps after them");
        assert_eq!(
            (node.prefix_hits, node.prefix_queries),
            (Some(10.0), Some(40.0))
        );
        assert_eq!(
            (node.running, node.waiting, node.kv_usage),
            (Some(2.0), Some(1.0), Some(0.5))
        );
        assert_eq!(node.in_flight, 3.0);
        let reason = |r: &str| {
            reading
                .decisions
                .get(&("gpu".to_string(), r.to_string()))
                .copied()
        };
        assert_eq!(reason("prefix_hit"), Some(2.0), "summed over policies");
        assert_eq!(reason("least_load"), Some(1.0));
    }
}
