//! The GPU-pool panel of `/status.json`: per inference upstream, which node serves which model
//! (from the pool's members: configured models, else the ones a node last listed), each node's
//! signals as last scraped, and the router's decisions by reason over the history's window.
//! A pure function of the balancer's status and the history.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::observe::history::HistoryView;
use crate::pool;

/// One inference upstream.
#[derive(Debug, Serialize)]
pub struct GpuPool {
    pub upstream: String,
    /// `vllm`, `sglang`, `llamacpp`, `ollama`, `openai`, ...
    pub engine: &'static str,
    pub balance: &'static str,
    /// Requests waiting at the edge for a free node.
    pub queued: u32,
    /// Each model and the nodes serving it, by model name.
    pub models: Vec<ModelNodes>,
    /// Nodes whose models are not known yet (no configured list, no answer to `/v1/models`).
    pub unknown_models: Vec<String>,
    pub nodes: Vec<GpuNode>,
    /// Routing decisions in the history's window, by reason (most first).
    pub decisions: Vec<DecisionCount>,
}

/// A model and the nodes serving it.
#[derive(Debug, Serialize, PartialEq)]
pub struct ModelNodes {
    pub model: String,
    pub nodes: Vec<String>,
}

/// One node and what it last said about itself (its series are in `history.nodes`).
#[derive(Debug, Serialize)]
pub struct GpuNode {
    pub address: String,
    /// `up`, `down`, `ejected` or `draining`.
    pub state: &'static str,
    pub models: Option<Vec<String>>,
    pub in_flight: u32,
    pub max_inflight: Option<u32>,
    /// From its last `/metrics` reading; `null` while none.
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    pub kv_usage: Option<f64>,
    pub signal_age_ms: Option<u64>,
}

/// How many decisions one reason made in the window.
#[derive(Debug, Serialize, PartialEq)]
pub struct DecisionCount {
    pub reason: String,
    pub in_window: u64,
}

/// The panel for every upstream in `engines` (name → engine), from the balancer's `pools` and
/// the `history`.
pub fn shape(
    pools: &[pool::UpstreamStatus],
    engines: &[(&str, &'static str)],
    history: Option<&HistoryView>,
) -> Vec<GpuPool> {
    engines
        .iter()
        .filter_map(|(name, engine)| {
            let pool = pools.iter().find(|p| p.name == *name)?;
            Some(one(pool, engine, history))
        })
        .collect()
}

fn one(
    pool: &pool::UpstreamStatus,
    engine: &'static str,
    history: Option<&HistoryView>,
) -> GpuPool {
    let mut models: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut unknown_models = Vec::new();
    for server in &pool.servers {
        match &server.models {
            Some(list) => {
                for model in list.iter() {
                    models
                        .entry(model)
                        .or_default()
                        .push(server.address.clone());
                }
            }
            None => unknown_models.push(server.address.clone()),
        }
    }
    let nodes = pool
        .servers
        .iter()
        .map(|s| {
            let load = s.load.as_ref().map(|(load, _)| load);
            GpuNode {
                address: s.address.clone(),
                state: s.state,
                models: s.models.as_ref().map(|m| m.to_vec()),
                in_flight: s.inflight,
                max_inflight: s.max_inflight,
                running: load.map(|l| l.running),
                waiting: load.map(|l| l.waiting),
                kv_usage: load.and_then(|l| l.kv_usage),
                signal_age_ms: s
                    .load
                    .as_ref()
                    .map(|(_, age)| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            }
        })
        .collect();
    let mut decisions: Vec<DecisionCount> = history
        .and_then(|h| h.decisions.get(&pool.name))
        .into_iter()
        .flatten()
        .map(|(reason, counts)| DecisionCount {
            reason: reason.clone(),
            in_window: counts
                .iter()
                .flatten()
                .map(|c| f64::from(*c))
                .sum::<f64>()
                .round() as u64,
        })
        .collect();
    decisions.sort_by(|a, b| b.in_window.cmp(&a.in_window).then(a.reason.cmp(&b.reason)));
    GpuPool {
        upstream: pool.name.clone(),
        engine,
        balance: pool.balance,
        queued: pool.queued,
        models: models
            .into_iter()
            .map(|(model, nodes)| ModelNodes {
                model: model.to_string(),
                nodes,
            })
            .collect(),
        unknown_models,
        nodes,
        decisions,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::inference::signals::Load;

    fn node(address: &str, models: Option<&[&str]>, load: Option<Load>) -> pool::ServerStatus {
        pool::ServerStatus {
            id: "0".into(),
            address: address.into(),
            state: "up",
            health: "up",
            admin_state: "ready",
            runtime_weight: None,
            admin_change: None,
            inflight: 2,
            max_inflight: Some(8),
            weight: 1,
            effective_weight: 1.0,
            requests: 0,
            failures: 0,
            checks: 0,
            sticky_hits: 0,
            sticky_entries: 0,
            discovered: false,
            recent_errors: Vec::new(),
            models: models.map(|m| m.iter().map(|s| s.to_string()).collect::<Vec<_>>().into()),
            load: load.map(|l| (l, Duration::from_millis(1500))),
            kv_events: None,
        }
    }

    #[test]
    fn models_map_to_nodes_and_decisions_add_up_over_the_window() {
        let load = Load {
            waiting: 1.0,
            running: 3.0,
            kv_usage: Some(0.25),
            prefix_hit_tokens: None,
            prefix_query_tokens: None,
            cache_tokens: None,
        };
        let pools = vec![
            pool::UpstreamStatus {
                name: "gpu".into(),
                balance: "cache_aware",
                queued: 1,
                servers: vec![
                    node("10.0.0.1:8000", Some(&["llama", "qwen"]), Some(load)),
                    node("10.0.0.2:8000", Some(&["llama"]), None),
                    node("10.0.0.3:8000", None, None),
                ],
                prefixes: Vec::new(),
            },
            pool::UpstreamStatus {
                name: "owui".into(),
                balance: "round_robin",
                queued: 0,
                servers: vec![node("10.0.1.1:80", None, None)],
                prefixes: Vec::new(),
            },
        ];
        let mut history = HistoryView {
            step_ms: 5_000,
            start_ms: 0,
            points: 3,
            window_points: 180,
            routes: BTreeMap::new(),
            upstreams: BTreeMap::new(),
            nodes: BTreeMap::new(),
            decisions: BTreeMap::new(),
        };
        history.decisions.insert(
            "gpu".into(),
            [
                ("least_load".to_string(), vec![Some(2.0), None, Some(3.0)]),
                ("prefix_hit".to_string(), vec![Some(9.0), Some(1.0), None]),
            ]
            .into(),
        );
        let panel = shape(&pools, &[("gpu", "vllm")], Some(&history));
        assert_eq!(panel.len(), 1, "only inference upstreams");
        let gpu = &panel[0];
        assert_eq!(
            (gpu.engine, gpu.balance, gpu.queued),
            ("vllm", "cache_aware", 1)
        );
        assert_eq!(
            gpu.models,
            [
                ModelNodes {
                    model: "llama".into(),
                    nodes: vec!["10.0.0.1:8000".into(), "10.0.0.2:8000".into()]
                },
                ModelNodes {
                    model: "qwen".into(),
                    nodes: vec!["10.0.0.1:8000".into()]
                },
            ]
        );
        assert_eq!(gpu.unknown_models, ["10.0.0.3:8000"]);
        assert_eq!(
            gpu.decisions,
            [
                DecisionCount {
                    reason: "prefix_hit".into(),
                    in_window: 10
                },
                DecisionCount {
                    reason: "least_load".into(),
                    in_window: 5
                },
            ]
        );
        let json = serde_json::to_value(&panel).expect("json");
        let first = &json[0]["nodes"][0];
        assert_eq!(first["running"], 3.0);
        assert_eq!(first["kv_usage"], 0.25);
        assert_eq!(first["signal_age_ms"], 1500);
        assert_eq!(first["in_flight"], 2);
        let second = &json[0]["nodes"][1];
        assert!(second["running"].is_null() && second["signal_age_ms"].is_null());
        assert!(json[0]["nodes"][2]["models"].is_null());
        // Without history there are no decisions to count.
        assert!(shape(&pools, &[("gpu", "vllm")], None)[0]
            .decisions
            .is_empty());
    }
}
