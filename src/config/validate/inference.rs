//! `upstreams.NAME.inference` and the keys that only make sense with it (`balance: metrics |
//! cache_aware`, a server's `models`).

use std::time::Duration;

use super::balancing::positive_duration;
use super::Checker;
use crate::config::model::{
    Balance, Engine, Inference, KvEvents, Models, DEFAULT_INFERENCE_MAX_BODY,
    DEFAULT_INFERENCE_REFRESH, DEFAULT_KV_HASH_SEED, DEFAULT_SIGNAL_MAX_AGE,
};
use crate::config::raw::{RawInference, RawModels, RawServerInference};

/// Shortest `refresh` accepted: scraping GPU nodes faster than this only adds load.
const MIN_REFRESH: Duration = Duration::from_millis(100);

impl Checker {
    /// The checked `inference` block at `path`.
    pub(super) fn inference(&mut self, path: &str, raw: RawInference) -> Option<Inference> {
        let errors_before = self.error_count();
        let engine = Engine::parse(&raw.engine);
        if engine.is_none() {
            self.at_value(
                &format!("{path}.engine"),
                format!(
                    "unknown engine `{}`: expected vllm, sglang, llamacpp, ray, ollama or openai",
                    raw.engine
                ),
            );
        }
        let models = match raw.models {
            None => Models::Discover,
            Some(RawModels::Keyword(word)) if word == "discover" => Models::Discover,
            Some(RawModels::Keyword(word)) => {
                self.at_value(
                    &format!("{path}.models"),
                    format!("expected `discover` or a list of model names, got `{word}`"),
                );
                Models::Discover
            }
            Some(RawModels::List(list)) => {
                self.model_list(&format!("{path}.models"), &list);
                Models::List(list)
            }
        };
        let refresh = positive_duration(
            self,
            &format!("{path}.refresh"),
            raw.refresh,
            DEFAULT_INFERENCE_REFRESH,
        );
        if refresh < MIN_REFRESH {
            self.at_value(&format!("{path}.refresh"), "must be at least 100ms");
        }
        let signal_max_age = positive_duration(
            self,
            &format!("{path}.signal_max_age"),
            raw.signal_max_age,
            DEFAULT_SIGNAL_MAX_AGE,
        );
        let max_body_path = format!("{path}.max_body");
        let max_body = match raw.max_body.map(|v| self.size(&max_body_path, &v)) {
            None | Some(None) => DEFAULT_INFERENCE_MAX_BODY,
            Some(Some(0)) => {
                self.at_value(&max_body_path, "must be greater than zero");
                DEFAULT_INFERENCE_MAX_BODY
            }
            Some(Some(size)) => size,
        };
        for (key, value) in [
            ("prefill_tokens_per_sec", raw.prefill_tokens_per_sec),
            ("cache_tokens", raw.cache_tokens),
        ] {
            if value == Some(0) {
                self.at_value(&format!("{path}.{key}"), "must be greater than zero");
            }
        }
        if self.error_count() != errors_before {
            return None;
        }
        Some(Inference {
            engine: engine?,
            models,
            refresh,
            max_body,
            affinity: raw.affinity.unwrap_or(true),
            signal_max_age,
            prefill_tokens_per_sec: raw.prefill_tokens_per_sec,
            cache_tokens: raw.cache_tokens,
            kv_hash_seed: raw
                .kv_hash_seed
                .unwrap_or_else(|| DEFAULT_KV_HASH_SEED.to_string()),
        })
    }

    /// A server's `inference` block at `path` (`has_inference`: its upstream has one).
    pub(super) fn server_inference(
        &mut self,
        path: &str,
        raw: RawServerInference,
        has_inference: bool,
    ) -> Option<KvEvents> {
        if !has_inference {
            self.at_key(
                path,
                "`inference` on a server needs `inference:` on its upstream",
            );
            return None;
        }
        let mut endpoint = |key: &str, value: Option<String>| {
            let value = value?;
            match zmq_tcp_endpoint(&value) {
                Ok(()) => Some(value),
                Err(message) => {
                    self.at_value(&format!("{path}.{key}"), message);
                    None
                }
            }
        };
        let events = endpoint("kv_events", raw.kv_events);
        let replay = endpoint("kv_events_replay", raw.kv_events_replay);
        if events.is_none() && replay.is_some() {
            self.at_key(
                &format!("{path}.kv_events_replay"),
                "`kv_events_replay` needs `kv_events`",
            );
        }
        events.map(|endpoint| KvEvents { endpoint, replay })
    }

    /// A non-empty list of non-empty, distinct model names.
    pub(super) fn model_list(&mut self, path: &str, list: &[String]) {
        if list.is_empty() {
            self.at_value(path, "must name at least one model");
        }
        for (i, model) in list.iter().enumerate() {
            if model.trim().is_empty() {
                self.at_value(&format!("{path}[{i}]"), "a model name must not be empty");
            } else if list[..i].contains(model) {
                self.at_value(
                    &format!("{path}[{i}]"),
                    format!("duplicate model `{model}`"),
                );
            }
        }
    }

    /// Inference-only policies need `inference:`.
    pub(super) fn inference_policy(&mut self, path: &str, balance: &Balance, has_inference: bool) {
        if matches!(balance, Balance::Metrics | Balance::CacheAware) && !has_inference {
            self.at_value(
                &format!("{path}.balance"),
                format!(
                    "balance `{}` needs `inference:` on this upstream (it reads OpenAI request bodies and GPU node metrics)",
                    balance.name()
                ),
            );
        }
    }
}

/// A ZMQ TCP endpoint to connect to: `tcp://HOST:PORT` with a port from 1 to 65535.
fn zmq_tcp_endpoint(text: &str) -> Result<(), String> {
    let bad = || format!("expected `tcp://HOST:PORT`, got `{text}`");
    let rest = text.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "*" || host.contains('/') {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod endpoint_tests {
    use super::zmq_tcp_endpoint;

    #[test]
    fn endpoints() {
        assert!(zmq_tcp_endpoint("tcp://127.0.0.1:5557").is_ok());
        assert!(zmq_tcp_endpoint("tcp://gpu-0.svc:5557").is_ok());
        assert!(zmq_tcp_endpoint("tcp://[::1]:5557").is_ok());
        for bad in [
            "127.0.0.1:5557",
            "tcp://*:5557",
            "tcp://host",
            "tcp://h:0",
            "ipc:///x",
            "tcp://:1",
        ] {
            assert!(zmq_tcp_endpoint(bad).is_err(), "{bad}");
        }
    }
}
