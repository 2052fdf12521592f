//! What the sampler reads at one moment ([`Reading`]: cumulative counters and histograms per
//! route, upstream and inference node, plus the node gauges as last scraped) and the pure
//! function that turns two readings into one point of every series ([`points`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::delta::{growth, rate, ratio, Buckets};

/// Series of a route and of an upstream, in this order.
pub const TRAFFIC_SERIES: [&str; 4] = [
    "requests_per_s",
    "errors_per_s",
    "latency_p50_s",
    "latency_p99_s",
];

/// Series of an inference node, in this order.
pub const NODE_SERIES: [&str; 8] = [
    "ttft_p50_s",
    "ttft_p90_s",
    "tokens_per_s",
    "running",
    "waiting",
    "kv_usage",
    "prefix_hit_rate",
    "in_flight",
];

/// One value per series; `None` is a gap.
pub type TrafficPoint = [Option<f64>; TRAFFIC_SERIES.len()];
pub type NodePoint = [Option<f64>; NODE_SERIES.len()];

/// A route's or an upstream's cumulative counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficReading {
    /// Requests answered.
    pub requests: f64,
    /// 5xx answers plus failed connection attempts.
    pub errors: f64,
    pub latency: Buckets,
}

/// An inference node's cumulative counts and its gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeReading {
    pub ttft: Buckets,
    /// Response chunks streamed to clients (first chunks plus the gaps after them).
    pub chunks: f64,
    /// Prefix-cache hit and query tokens the node reported, when it does.
    pub prefix_hits: Option<f64>,
    pub prefix_queries: Option<f64>,
    /// As last scraped; `None` before the first reading.
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    pub kv_usage: Option<f64>,
    pub in_flight: f64,
}

/// Everything read at one moment, keyed by route, upstream, (upstream, node) and (upstream,
/// decision reason).
#[derive(Debug, Clone)]
pub struct Reading {
    pub at: Instant,
    pub routes: BTreeMap<String, TrafficReading>,
    pub upstreams: BTreeMap<String, TrafficReading>,
    pub nodes: BTreeMap<(String, String), NodeReading>,
    /// Routing decisions so far.
    pub decisions: BTreeMap<(String, String), f64>,
}

impl Reading {
    /// An empty reading taken at `at`.
    pub fn new(at: Instant) -> Self {
        Self {
            at,
            routes: BTreeMap::new(),
            upstreams: BTreeMap::new(),
            nodes: BTreeMap::new(),
            decisions: BTreeMap::new(),
        }
    }
}

/// One point of every series, for the interval ending at `now`'s reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Points {
    pub routes: Vec<(String, TrafficPoint)>,
    pub upstreams: Vec<(String, TrafficPoint)>,
    pub nodes: Vec<((String, String), NodePoint)>,
    /// Decisions made in the interval (a count, not a rate).
    pub decisions: Vec<((String, String), Option<f64>)>,
}

/// The interval between two readings of a route or upstream. Without an earlier reading (it
/// is new) every value is a gap.
pub fn traffic_point(
    before: Option<&TrafficReading>,
    now: &TrafficReading,
    elapsed: Duration,
) -> TrafficPoint {
    let Some(before) = before else {
        return [None; TRAFFIC_SERIES.len()];
    };
    let latency = now.latency.since(&before.latency);
    [
        rate(before.requests, now.requests, elapsed),
        rate(before.errors, now.errors, elapsed),
        latency.as_ref().and_then(|l| l.quantile(0.5)),
        latency.as_ref().and_then(|l| l.quantile(0.99)),
    ]
}

/// The interval between two readings of an inference node: TTFT quantiles and chunks per
/// second from the growth of its counts, the prefix hit rate from the growth of the hit and
/// query tokens it reported; running, waiting, KV use and in-flight as read now.
pub fn node_point(before: Option<&NodeReading>, now: &NodeReading, elapsed: Duration) -> NodePoint {
    let gauges = [now.running, now.waiting, now.kv_usage, Some(now.in_flight)];
    let Some(before) = before else {
        return [
            None, None, None, gauges[0], gauges[1], gauges[2], None, gauges[3],
        ];
    };
    let ttft = now.ttft.since(&before.ttft);
    let pair = |a: Option<f64>, b: Option<f64>| Some((a?, b?));
    let hit_rate = pair(before.prefix_hits, now.prefix_hits)
        .zip(pair(before.prefix_queries, now.prefix_queries))
        .and_then(|(hits, queries)| ratio(hits, queries));
    [
        ttft.as_ref().and_then(|t| t.quantile(0.5)),
        ttft.as_ref().and_then(|t| t.quantile(0.9)),
        rate(before.chunks, now.chunks, elapsed),
        gauges[0],
        gauges[1],
        gauges[2],
        hit_rate,
        gauges[3],
    ]
}

/// Every series' point for the interval from `before` to `now`. What `now` no longer has gets
/// no point (its series fills with gaps until it is retired).
pub fn points(before: Option<&Reading>, now: &Reading) -> Points {
    let elapsed = before.map_or(Duration::ZERO, |b| now.at.saturating_duration_since(b.at));
    let routes = now
        .routes
        .iter()
        .map(|(name, r)| {
            let earlier = before.and_then(|b| b.routes.get(name));
            (name.clone(), traffic_point(earlier, r, elapsed))
        })
        .collect();
    let upstreams = now
        .upstreams
        .iter()
        .map(|(name, r)| {
            let earlier = before.and_then(|b| b.upstreams.get(name));
            (name.clone(), traffic_point(earlier, r, elapsed))
        })
        .collect();
    let nodes = now
        .nodes
        .iter()
        .map(|(key, r)| {
            let earlier = before.and_then(|b| b.nodes.get(key));
            (key.clone(), node_point(earlier, r, elapsed))
        })
        .collect();
    let decisions = now
        .decisions
        .iter()
        .map(|(key, &count)| {
            // A reason seen for the first time counted from zero.
            let earlier = before.map(|b| b.decisions.get(key).copied().unwrap_or(0.0));
            (key.clone(), earlier.and_then(|e| growth(e, count)))
        })
        .collect();
    Points {
        routes,
        upstreams,
        nodes,
        decisions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(cumulative: [u64; 2], count: u64) -> Buckets {
        Buckets {
            bounds: vec![(0.1, cumulative[0]), (1.0, cumulative[1])],
            count,
        }
    }

    #[test]
    fn a_traffic_interval_has_rates_and_quantiles() {
        let before = TrafficReading {
            requests: 100.0,
            errors: 4.0,
            latency: latency([50, 100], 100),
        };
        let now = TrafficReading {
            requests: 110.0,
            errors: 5.0,
            latency: latency([60, 110], 110),
        };
        let point = traffic_point(Some(&before), &now, Duration::from_secs(5));
        assert_eq!(point[0], Some(2.0));
        assert_eq!(point[1], Some(0.2));
        assert!((point[2].expect("p50") - 0.05).abs() < 1e-9);
        assert!((point[3].expect("p99") - 0.099).abs() < 1e-9);
        assert_eq!(traffic_point(None, &now, Duration::from_secs(5)), [None; 4]);
    }

    #[test]
    fn an_idle_interval_is_zero_with_no_quantile() {
        let r = TrafficReading {
            requests: 7.0,
            errors: 0.0,
            latency: latency([7, 7], 7),
        };
        let point = traffic_point(Some(&r), &r, Duration::from_secs(5));
        assert_eq!(point, [Some(0.0), Some(0.0), None, None]);
    }

    #[test]
    fn a_reset_is_a_gap_and_the_next_interval_counts_again() {
        let before = TrafficReading {
            requests: 500.0,
            errors: 9.0,
            latency: latency([400, 500], 500),
        };
        let restarted = TrafficReading {
            requests: 3.0,
            errors: 0.0,
            latency: latency([3, 3], 3),
        };
        let point = traffic_point(Some(&before), &restarted, Duration::from_secs(5));
        assert_eq!(point, [None; 4]);
        let next = TrafficReading {
            requests: 13.0,
            ..restarted.clone()
        };
        let point = traffic_point(Some(&restarted), &next, Duration::from_secs(5));
        assert_eq!(point[0], Some(2.0));
    }

    #[test]
    fn node_points_mix_deltas_and_gauges() {
        let before = NodeReading {
            ttft: latency([0, 0], 0),
            chunks: 100.0,
            prefix_hits: Some(1000.0),
            prefix_queries: Some(4000.0),
            running: Some(1.0),
            waiting: Some(0.0),
            kv_usage: Some(0.1),
            in_flight: 1.0,
        };
        let now = NodeReading {
            ttft: latency([0, 4], 4),
            chunks: 300.0,
            prefix_hits: Some(1300.0),
            prefix_queries: Some(5000.0),
            running: Some(3.0),
            waiting: Some(2.0),
            kv_usage: None,
            in_flight: 4.0,
        };
        let point = node_point(Some(&before), &now, Duration::from_secs(2));
        assert!((point[0].expect("p50") - 0.55).abs() < 1e-9, "{point:?}");
        assert!((point[1].expect("p90") - 0.91).abs() < 1e-9, "{point:?}");
        assert_eq!(point[2], Some(100.0), "chunks per second");
        assert_eq!(&point[3..6], &[Some(3.0), Some(2.0), None]);
        assert!((point[6].expect("hit rate") - 0.3).abs() < 1e-9);
        assert_eq!(point[7], Some(4.0));
        // A node that reports no prefix counters has no hit rate; a first reading has gauges
        // only.
        let bare = NodeReading {
            prefix_hits: None,
            ..now.clone()
        };
        assert_eq!(
            node_point(Some(&before), &bare, Duration::from_secs(2))[6],
            None
        );
        let first = node_point(None, &now, Duration::ZERO);
        assert_eq!(
            first,
            [
                None,
                None,
                None,
                Some(3.0),
                Some(2.0),
                None,
                None,
                Some(4.0)
            ]
        );
    }

    #[test]
    fn readings_pair_up_by_key() {
        let t0 = Instant::now();
        let mut before = Reading::new(t0);
        before.routes.insert(
            "a".into(),
            TrafficReading {
                requests: 1.0,
                ..TrafficReading::default()
            },
        );
        before
            .decisions
            .insert(("gpu".into(), "least_load".into()), 5.0);
        let mut now = Reading::new(t0 + Duration::from_secs(1));
        now.routes.insert(
            "a".into(),
            TrafficReading {
                requests: 4.0,
                ..TrafficReading::default()
            },
        );
        now.routes.insert("new".into(), TrafficReading::default());
        now.decisions
            .insert(("gpu".into(), "least_load".into()), 9.0);
        now.decisions
            .insert(("gpu".into(), "prefix_hit".into()), 2.0);
        let points = points(Some(&before), &now);
        assert_eq!(
            points.routes[0],
            ("a".to_string(), [Some(3.0), Some(0.0), None, None])
        );
        assert_eq!(
            points.routes[1].1, [None; 4],
            "a new route starts with a gap"
        );
        assert_eq!(
            points.decisions,
            vec![
                (("gpu".to_string(), "least_load".to_string()), Some(4.0)),
                (("gpu".to_string(), "prefix_hit".to_string()), Some(2.0)),
            ]
        );
        let first = super::points(None, &now);
        assert_eq!(first.decisions[0].1, None, "no earlier reading, no count");
    }
}
