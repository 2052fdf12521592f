//! The recent history behind the status page's charts: the last [`HISTORY_POINTS`] steps
//! (15 minutes at the default 5 s step) of every route's and upstream's request rate, error
//! rate and latency quantiles, of every inference node's TTFT, streamed chunks, load and prefix
//! hits, and of each inference upstream's routing decisions by reason. [`History`] is the
//! long-lived store (kept by [`crate::runtime::Live`]); the node sampler
//! ([`crate::monitor::sampler`]) fills it, off the request path, from the metric families and
//! the pools, through the pure parts: [`delta`] (two cumulative readings into one value),
//! [`point`] (two readings into one point of every series) and [`timeline`] (fixed-size rings on
//! one shared clock).
//!
//! Memory: every series is a ring of [`HISTORY_POINTS`] `f32`s (720 bytes); a route or an
//! upstream has 4 series, a node 8, a decision reason 1, and at most [`MAX_TRACKED`] of each
//! kind are kept.

pub mod delta;
pub mod point;
pub mod timeline;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

pub use point::{Points, Reading, NODE_SERIES, TRAFFIC_SERIES};
pub use timeline::{Rings, Timeline, HISTORY_POINTS, MAX_TRACKED};

/// One thing's series by name, oldest first; `null` is a gap.
pub type SeriesView = BTreeMap<&'static str, Vec<Option<f32>>>;

/// The history as `/status.json` carries it: every series has `points` values, the first at
/// `start_ms`, one every `step_ms` (each the value over the step that ends there).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryView {
    pub step_ms: u64,
    pub start_ms: i64,
    /// Values in each series now (up to `window_points`).
    pub points: usize,
    pub window_points: usize,
    /// By route name.
    pub routes: BTreeMap<String, SeriesView>,
    /// By upstream name.
    pub upstreams: BTreeMap<String, SeriesView>,
    /// By upstream, then node address.
    pub nodes: BTreeMap<String, BTreeMap<String, SeriesView>>,
    /// Routing decisions made in each step, by upstream, then reason.
    pub decisions: BTreeMap<String, BTreeMap<String, Vec<Option<f32>>>>,
}

/// The long-lived history store (see the module docs).
#[derive(Debug, Default)]
pub struct History {
    timeline: Mutex<Timeline>,
}

impl History {
    /// Sets the step (`None`: no history, e.g. without an admin listener); a different step
    /// than before starts over.
    pub fn configure(&self, step: Option<Duration>) {
        self.timeline.lock().set_step(step);
    }

    /// The step in force.
    pub fn step(&self) -> Option<Duration> {
        self.timeline.lock().step()
    }

    /// Records one point of every series, for the step ending at `at` (`at_ms` on the wall
    /// clock).
    pub fn record(&self, at: Instant, at_ms: i64, points: &Points) {
        self.timeline.lock().record(at, at_ms, points);
    }

    /// Forgets the series of routes, upstreams and nodes the configuration no longer names.
    pub fn retain(
        &self,
        keep_route: impl Fn(&str) -> bool,
        keep_upstream: impl Fn(&str) -> bool,
        keep_node: impl Fn(&str, &str) -> bool,
    ) {
        self.timeline
            .lock()
            .retain(keep_route, keep_upstream, keep_node);
    }

    /// A copy of every series for `/status.json`; `None` while history is off.
    pub fn view(&self) -> Option<HistoryView> {
        let timeline = self.timeline.lock();
        let step = timeline.step()?;
        let (len, head, start_ms) = timeline.window();
        let named = |names: &[&'static str], series: &dyn Fn(usize) -> Vec<Option<f32>>| {
            names
                .iter()
                .enumerate()
                .map(|(k, name)| (*name, series(k)))
                .collect::<SeriesView>()
        };
        let routes = timeline
            .routes
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    named(&TRAFFIC_SERIES, &|k| r.series(k, head, len)),
                )
            })
            .collect();
        let upstreams = timeline
            .upstreams
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    named(&TRAFFIC_SERIES, &|k| r.series(k, head, len)),
                )
            })
            .collect();
        let mut nodes: BTreeMap<String, BTreeMap<String, SeriesView>> = BTreeMap::new();
        for ((upstream, address), r) in &timeline.nodes {
            nodes.entry(upstream.clone()).or_default().insert(
                address.clone(),
                named(&NODE_SERIES, &|k| r.series(k, head, len)),
            );
        }
        let mut decisions: BTreeMap<String, BTreeMap<String, Vec<Option<f32>>>> = BTreeMap::new();
        for ((upstream, reason), r) in &timeline.decisions {
            decisions
                .entry(upstream.clone())
                .or_default()
                .insert(reason.clone(), r.series(0, head, len));
        }
        Some(HistoryView {
            step_ms: u64::try_from(step.as_millis()).unwrap_or(u64::MAX),
            start_ms,
            points: len,
            window_points: HISTORY_POINTS,
            routes,
            upstreams,
            nodes,
            decisions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_names_every_series_and_shares_one_clock() {
        let history = History::default();
        assert!(history.view().is_none(), "off until configured");
        history.configure(Some(Duration::from_secs(5)));
        let t0 = Instant::now();
        let points = Points {
            routes: vec![("chat".into(), [Some(2.5), Some(0.0), Some(0.01), None])],
            upstreams: vec![("gpu".into(), [Some(2.5), Some(0.5), None, None])],
            nodes: vec![(
                ("gpu".into(), "10.0.0.1:8000".into()),
                [
                    Some(0.2),
                    Some(0.4),
                    Some(30.0),
                    Some(1.0),
                    Some(0.0),
                    Some(0.5),
                    None,
                    Some(2.0),
                ],
            )],
            decisions: vec![(("gpu".into(), "least_load".into()), Some(12.0))],
        };
        history.record(t0, 1_000_000, &points);
        history.record(t0 + Duration::from_secs(5), 1_005_000, &points);
        let view = history.view().expect("on");
        assert_eq!(
            (view.step_ms, view.start_ms, view.points),
            (5_000, 1_000_000, 2)
        );
        assert_eq!(view.window_points, HISTORY_POINTS);
        assert_eq!(
            view.routes["chat"]["requests_per_s"],
            [Some(2.5), Some(2.5)]
        );
        assert_eq!(view.routes["chat"]["latency_p99_s"], [None, None]);
        let node = &view.nodes["gpu"]["10.0.0.1:8000"];
        assert_eq!(node.len(), NODE_SERIES.len());
        assert_eq!(node["tokens_per_s"], [Some(30.0), Some(30.0)]);
        assert_eq!(
            view.decisions["gpu"]["least_load"],
            [Some(12.0), Some(12.0)]
        );
        // As `/status.json` writes it: an f32 in its shortest form.
        let text = serde_json::to_string(&view).expect("json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(json["routes"]["chat"]["latency_p50_s"][0], 0.01);
        assert!(json["routes"]["chat"]["latency_p99_s"][0].is_null());

        history.retain(|_| false, |u| u == "gpu", |_, _| false);
        let view = history.view().expect("on");
        assert!(view.routes.is_empty() && view.nodes.is_empty());
        assert_eq!(view.upstreams.len(), 1);
        history.configure(None);
        assert!(history.view().is_none());
    }
}
