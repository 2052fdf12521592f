//! The ring buffers behind the history: one shared timeline of [`HISTORY_POINTS`] slots, one
//! `f32` ring per series aligned to it (a gap is NaN), grouped by what they describe (route,
//! upstream, inference node, decision reason). Every record writes one slot of every series
//! (missed slots become gaps), so all series share one start time and step. A series nobody has
//! written for a whole window is dropped, and at most [`MAX_TRACKED`] things of each kind are
//! kept, so memory stays bounded whatever the configuration or discovery does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::point::{Points, NODE_SERIES, TRAFFIC_SERIES};

/// Slots in the window: 15 minutes at the default 5 s step.
pub const HISTORY_POINTS: usize = 180;

/// Most routes, upstreams, nodes or decision reasons tracked at once (each kind), like the
/// metrics' label budget.
pub const MAX_TRACKED: usize = 1000;

/// One thing's point: its key and a value (or gap) per series.
type Keyed<Key, const K: usize> = (Key, [Option<f64>; K]);

/// The rings of one thing: `K` series.
#[derive(Debug, Clone)]
pub struct Rings<const K: usize> {
    rings: [Box<[f32]>; K],
    /// The last slot whose point included this thing.
    last_seen: u64,
}

impl<const K: usize> Rings<K> {
    fn new(slot: u64) -> Self {
        Self {
            rings: std::array::from_fn(|_| vec![f32::NAN; HISTORY_POINTS].into_boxed_slice()),
            last_seen: slot,
        }
    }

    fn write(&mut self, index: usize, values: Option<&[Option<f64>; K]>) {
        for (k, ring) in self.rings.iter_mut().enumerate() {
            let value = values.and_then(|v| v[k]).filter(|v| v.is_finite());
            ring[index] = value.map_or(f32::NAN, |v| v as f32);
        }
    }

    /// Series `k`, oldest first, the last `len` slots ending before `head`.
    pub fn series(&self, k: usize, head: usize, len: usize) -> Vec<Option<f32>> {
        let ring = &self.rings[k];
        (0..len)
            .map(|i| ring[(head + HISTORY_POINTS - len + i) % HISTORY_POINTS])
            .map(|v| (!v.is_nan()).then_some(v))
            .collect()
    }
}

/// Every series and the clock they share.
#[derive(Debug, Default)]
pub struct Timeline {
    step: Option<Duration>,
    /// When slot 0 was recorded.
    origin: Option<Instant>,
    last_slot: u64,
    /// Slots holding data (up to [`HISTORY_POINTS`]).
    filled: usize,
    /// The ring index the next slot goes to.
    head: usize,
    /// Wall-clock time of the last slot (Unix milliseconds).
    last_ms: i64,
    pub(super) routes: BTreeMap<String, Rings<{ TRAFFIC_SERIES.len() }>>,
    pub(super) upstreams: BTreeMap<String, Rings<{ TRAFFIC_SERIES.len() }>>,
    pub(super) nodes: BTreeMap<(String, String), Rings<{ NODE_SERIES.len() }>>,
    pub(super) decisions: BTreeMap<(String, String), Rings<1>>,
}

impl Timeline {
    /// The step in force; `None` while history is off.
    pub fn step(&self) -> Option<Duration> {
        self.step
    }

    /// Sets the step; a different one (or turning history off) starts over.
    pub fn set_step(&mut self, step: Option<Duration>) {
        if self.step != step {
            *self = Self {
                step,
                ..Self::default()
            };
        }
    }

    /// (slots filled, ring index after the newest, wall-clock ms of the oldest slot).
    pub fn window(&self) -> (usize, usize, i64) {
        let step_ms = self.step.map_or(0, |s| s.as_millis() as i64);
        let start = self.last_ms - step_ms * (self.filled.max(1) as i64 - 1);
        (self.filled, self.head, start)
    }

    /// Records `points` as the slot for `at` (wall clock `at_ms`). Slots missed since the last
    /// record become gaps; a record in the same slot as the last goes to the next one.
    pub fn record(&mut self, at: Instant, at_ms: i64, points: &Points) {
        let Some(step) = self.step.filter(|s| !s.is_zero()) else {
            return;
        };
        let origin = *self.origin.get_or_insert(at);
        let elapsed = at.saturating_duration_since(origin).as_secs_f64();
        let mut slot = (elapsed / step.as_secs_f64()).round() as u64;
        if self.filled > 0 && slot <= self.last_slot {
            slot = self.last_slot + 1;
        }
        let missed = if self.filled == 0 {
            0
        } else {
            (slot - self.last_slot - 1).min(HISTORY_POINTS as u64) as usize
        };
        for _ in 0..missed {
            self.write_slot(slot, None);
        }
        self.write_slot(slot, Some(points));
        self.filled = (self.filled + missed + 1).min(HISTORY_POINTS);
        self.last_slot = slot;
        self.last_ms = at_ms;
        let recent = |last_seen: u64| slot - last_seen < HISTORY_POINTS as u64;
        self.routes.retain(|_, r| recent(r.last_seen));
        self.upstreams.retain(|_, r| recent(r.last_seen));
        self.nodes.retain(|_, r| recent(r.last_seen));
        self.decisions.retain(|_, r| recent(r.last_seen));
    }

    /// Writes one slot of every series at `head` (gaps where `points` has nothing) and moves on.
    fn write_slot(&mut self, slot: u64, points: Option<&Points>) {
        let index = self.head;
        write_kind(
            &mut self.routes,
            index,
            slot,
            points.map(|p| p.routes.as_slice()),
        );
        write_kind(
            &mut self.upstreams,
            index,
            slot,
            points.map(|p| p.upstreams.as_slice()),
        );
        write_kind(
            &mut self.nodes,
            index,
            slot,
            points.map(|p| p.nodes.as_slice()),
        );
        let decisions: Option<Vec<Keyed<(String, String), 1>>> =
            points.map(|p| p.decisions.iter().map(|(k, v)| (k.clone(), [*v])).collect());
        write_kind(&mut self.decisions, index, slot, decisions.as_deref());
        self.head = (self.head + 1) % HISTORY_POINTS;
    }

    /// Forgets what `keep_*` say the configuration no longer names.
    pub fn retain(
        &mut self,
        keep_route: impl Fn(&str) -> bool,
        keep_upstream: impl Fn(&str) -> bool,
        keep_node: impl Fn(&str, &str) -> bool,
    ) {
        self.routes.retain(|name, _| keep_route(name));
        self.upstreams.retain(|name, _| keep_upstream(name));
        self.nodes
            .retain(|(u, a), _| keep_upstream(u) && keep_node(u, a));
        self.decisions.retain(|(u, _), _| keep_upstream(u));
    }
}

/// Writes slot `index` of every thing of one kind: its value from `values`, or a gap. Things
/// first seen now get rings (up to [`MAX_TRACKED`]).
fn write_kind<Key: Ord + Clone, const K: usize>(
    kind: &mut BTreeMap<Key, Rings<K>>,
    index: usize,
    slot: u64,
    values: Option<&[Keyed<Key, K>]>,
) {
    let mut written = 0;
    if let Some(values) = values {
        for (key, point) in values {
            if !kind.contains_key(key) {
                if kind.len() >= MAX_TRACKED {
                    continue;
                }
                kind.insert(key.clone(), Rings::new(slot));
            }
            let Some(rings) = kind.get_mut(key) else {
                continue;
            };
            rings.write(index, Some(point));
            rings.last_seen = slot;
            written += 1;
        }
    }
    if written < kind.len() {
        for rings in kind
            .values_mut()
            .filter(|r| r.last_seen != slot || values.is_none())
        {
            rings.write(index, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, requests: f64) -> Points {
        Points {
            routes: vec![(name.to_string(), [Some(requests), Some(0.0), None, None])],
            ..Points::default()
        }
    }

    fn requests(timeline: &Timeline, name: &str) -> Vec<Option<f32>> {
        let (len, head, _) = timeline.window();
        timeline.routes[name].series(0, head, len)
    }

    #[test]
    fn slots_follow_the_clock_and_missed_ones_are_gaps() {
        let mut timeline = Timeline::default();
        let step = Duration::from_secs(5);
        let t0 = Instant::now();
        timeline.record(t0, 1_000_000, &route("a", 1.0));
        assert!(timeline.routes.is_empty(), "history is off without a step");
        timeline.set_step(Some(step));
        timeline.record(t0, 1_000_000, &route("a", 1.0));
        timeline.record(t0 + step, 1_005_000, &route("a", 2.0));
        // The sampler was late: two slots went by without a record.
        timeline.record(t0 + step * 4, 1_020_000, &route("a", 3.0));
        assert_eq!(
            requests(&timeline, "a"),
            [Some(1.0), Some(2.0), None, None, Some(3.0)]
        );
        let (len, _, start) = timeline.window();
        assert_eq!((len, start), (5, 1_000_000));
        // Two records in one slot: the second takes the next slot.
        timeline.record(t0 + step * 4, 1_020_001, &route("a", 4.0));
        assert_eq!(requests(&timeline, "a").len(), 6);
    }

    #[test]
    fn the_window_is_bounded_and_late_comers_start_with_gaps() {
        let mut timeline = Timeline::default();
        let step = Duration::from_millis(100);
        timeline.set_step(Some(step));
        let t0 = Instant::now();
        for i in 0..HISTORY_POINTS + 20 {
            let mut points = route("a", i as f64);
            if i >= HISTORY_POINTS + 18 {
                points
                    .routes
                    .push(("b".into(), [Some(7.0), None, None, None]));
            }
            timeline.record(t0 + step * i as u32, i as i64 * 100, &points);
        }
        let a = requests(&timeline, "a");
        assert_eq!(a.len(), HISTORY_POINTS);
        assert_eq!(a[0], Some(20.0), "the oldest slots were overwritten");
        assert_eq!(a[HISTORY_POINTS - 1], Some((HISTORY_POINTS + 19) as f32));
        let b = requests(&timeline, "b");
        assert_eq!(b.len(), HISTORY_POINTS);
        assert!(b[..HISTORY_POINTS - 2].iter().all(Option::is_none));
        assert_eq!(b[HISTORY_POINTS - 2..], [Some(7.0), Some(7.0)]);
        let (_, _, start) = timeline.window();
        assert_eq!(start, 2_000);
    }

    #[test]
    fn things_no_longer_read_fade_out_after_a_window() {
        let mut timeline = Timeline::default();
        let step = Duration::from_secs(1);
        timeline.set_step(Some(step));
        let t0 = Instant::now();
        timeline.record(t0, 0, &route("gone", 1.0));
        for i in 1..HISTORY_POINTS as u32 {
            timeline.record(t0 + step * i, 0, &route("stays", 1.0));
            assert!(timeline.routes.contains_key("gone"), "slot {i}");
        }
        timeline.record(t0 + step * HISTORY_POINTS as u32, 0, &route("stays", 1.0));
        assert!(!timeline.routes.contains_key("gone"));
        assert!(timeline.routes.contains_key("stays"));
        // A jump of more than a window clears every slot.
        timeline.record(t0 + step * 10_000, 0, &route("stays", 2.0));
        let stays = requests(&timeline, "stays");
        assert_eq!(stays.iter().filter(|v| v.is_some()).count(), 1);
    }

    #[test]
    fn retiring_and_changing_the_step() {
        let mut timeline = Timeline::default();
        timeline.set_step(Some(Duration::from_secs(5)));
        let points = Points {
            routes: vec![("r".into(), [None; 4])],
            upstreams: vec![("u".into(), [None; 4]), ("v".into(), [None; 4])],
            nodes: vec![
                (("u".into(), "n1".into()), [None; 8]),
                (("u".into(), "n2".into()), [None; 8]),
            ],
            decisions: vec![(("v".into(), "least_load".into()), Some(1.0))],
        };
        timeline.record(Instant::now(), 0, &points);
        timeline.retain(|r| r != "r", |u| u == "u", |_, a| a == "n1");
        assert!(timeline.routes.is_empty());
        assert_eq!(timeline.upstreams.len(), 1);
        assert_eq!(timeline.nodes.len(), 1);
        assert!(timeline.decisions.is_empty());
        timeline.set_step(Some(Duration::from_secs(5)));
        assert_eq!(timeline.nodes.len(), 1, "the same step keeps everything");
        timeline.set_step(Some(Duration::from_secs(1)));
        assert!(timeline.nodes.is_empty() && timeline.upstreams.is_empty());
        assert_eq!(timeline.window().0, 0);
    }

    #[test]
    fn tracking_is_capped_per_kind() {
        let mut timeline = Timeline::default();
        timeline.set_step(Some(Duration::from_secs(5)));
        let points = Points {
            routes: (0..MAX_TRACKED + 5)
                .map(|i| (format!("r{i:05}"), [Some(1.0), None, None, None]))
                .collect(),
            ..Points::default()
        };
        timeline.record(Instant::now(), 0, &points);
        assert_eq!(timeline.routes.len(), MAX_TRACKED);
    }
}
