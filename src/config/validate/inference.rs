//! `upstreams.NAME.inference` and the keys that only make sense with it (`balance: metrics |
//! cache_aware`, a server's `models`).

use std::time::Duration;

use super::balancing::positive_duration;
use super::Checker;
use crate::config::model::{
    Balance, Engine, Inference, Models, DEFAULT_INFERENCE_MAX_BODY, DEFAULT_INFERENCE_REFRESH,
    DEFAULT_SIGNAL_MAX_AGE,
};
use crate::config::raw::{RawInference, RawModels};

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
        })
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
