//! Reads an inference server's Prometheus text exposition (`GET /metrics`) into a [`Load`]: the
//! engine-specific names of queue length, running requests, KV-cache use and prefix-cache token
//! counters, normalized across vLLM (and Ray Serve, which uses vLLM's names), SGLang and llama.cpp.
//!
//! Counts are summed over every label set (a server may run several models or engines); the
//! KV-cache fraction is averaged over them. Comments, `# HELP`/`# TYPE`, timestamps, exemplars
//! and non-finite values are ignored; a counter matches with or without its `_total` suffix, and a
//! name with the `ray_` prefix Ray's metrics agent adds (`ray_vllm:num_requests_running`) matches
//! the engine's own.

use std::collections::HashMap;

use super::signals::Load;
use crate::config::model::Engine;

/// Which metric names carry each part of a [`Load`] for one engine; names are written without
/// a `_total` suffix, and the first name of a list that is present wins.
struct Names {
    waiting: &'static [&'static str],
    running: &'static [&'static str],
    kv_usage: &'static [&'static str],
    prefix_hits: &'static [&'static str],
    prefix_queries: &'static [&'static str],
    /// An info metric whose labels give the KV-cache size.
    cache_info: Option<&'static str>,
}

const VLLM: Names = Names {
    waiting: &["vllm:num_requests_waiting"],
    running: &["vllm:num_requests_running"],
    // V1 first, then V0's name.
    kv_usage: &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    prefix_hits: &["vllm:prefix_cache_hits"],
    prefix_queries: &["vllm:prefix_cache_queries"],
    cache_info: Some("vllm:cache_config_info"),
};

const SGLANG: Names = Names {
    waiting: &["sglang:num_queue_reqs"],
    running: &["sglang:num_running_reqs"],
    kv_usage: &["sglang:token_usage"],
    prefix_hits: &["sglang:cached_tokens"],
    prefix_queries: &["sglang:prompt_tokens"],
    cache_info: None,
};

const LLAMACPP: Names = Names {
    waiting: &["llamacpp:requests_deferred"],
    running: &["llamacpp:requests_processing"],
    kv_usage: &["llamacpp:kv_cache_usage_ratio"],
    prefix_hits: &[],
    prefix_queries: &[],
    cache_info: None,
};

fn names(engine: Engine) -> Option<&'static Names> {
    match engine {
        Engine::Vllm | Engine::Ray => Some(&VLLM),
        Engine::Sglang => Some(&SGLANG),
        Engine::Llamacpp => Some(&LLAMACPP),
        Engine::Ollama | Engine::Openai => None,
    }
}

/// Sum and number of samples of one metric.
#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    sum: f64,
    count: u32,
}

/// The engine's load in `text`; `None` when the engine has no metrics or the text holds neither
/// a waiting nor a running count (not this engine's exposition, or not an exposition at all).
pub fn parse_load(engine: Engine, text: &str) -> Option<Load> {
    let names = names(engine)?;
    let wanted = |name: &str| {
        [
            names.waiting,
            names.running,
            names.kv_usage,
            names.prefix_hits,
            names.prefix_queries,
        ]
        .iter()
        .any(|list| list.contains(&name))
    };
    let mut found: HashMap<&str, Acc> = HashMap::new();
    for (name, value) in samples(text) {
        let base = name.strip_prefix("ray_").unwrap_or(name);
        let base = base.strip_suffix("_total").unwrap_or(base);
        if wanted(base) {
            let acc = found.entry(base).or_default();
            acc.sum += value;
            acc.count += 1;
        }
    }
    let first = |list: &[&str]| list.iter().find_map(|n| found.get(n).copied());
    let waiting = first(names.waiting);
    let running = first(names.running);
    if waiting.is_none() && running.is_none() {
        return None;
    }
    let kv_usage = first(names.kv_usage)
        .map(|acc| (acc.sum / f64::from(acc.count.max(1))).clamp(0.0, 1.0))
        .filter(|v| v.is_finite());
    let total = |acc: Option<Acc>| acc.map(|a| a.sum).filter(|v| v.is_finite());
    let cache_tokens = names.cache_info.and_then(|name| cache_tokens(text, name));
    Some(Load {
        waiting: total(waiting).unwrap_or(0.0).max(0.0),
        running: total(running).unwrap_or(0.0).max(0.0),
        kv_usage,
        prefix_hit_tokens: total(first(names.prefix_hits)),
        prefix_query_tokens: total(first(names.prefix_queries)),
        cache_tokens,
    })
}

/// The KV-cache size in tokens from an info metric's labels (`num_gpu_blocks` × `block_size`),
/// summed over its label sets (one per engine).
fn cache_tokens(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix("ray_").unwrap_or(line).strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') {
            continue;
        }
        let Some(end) = labels_end(rest) else {
            continue;
        };
        let labels = &rest[1..end - 1];
        let number = |key: &str| label_value(labels, key)?.parse::<f64>().ok();
        if let (Some(blocks), Some(size)) = (number("num_gpu_blocks"), number("block_size")) {
            let tokens = blocks * size;
            if tokens.is_finite() && tokens > 0.0 {
                total = Some(total.unwrap_or(0.0) + tokens);
            }
        }
    }
    total
}

/// The value of label `key` in a label set's text (`a="1",b="2"`).
fn label_value<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = labels;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut escaped = false;
        let mut close = None;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let close = close?;
        if name == key {
            return Some(&after[..close]);
        }
        rest = &after[close + 1..];
    }
}

/// Every sample line as (metric name, finite value).
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines().filter_map(sample)
}

/// One line `name{labels} value [timestamp]`; `None` for comments, blank and malformed lines.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        rest = &rest[labels_end(rest)?..];
    }
    let value = rest.split_ascii_whitespace().next()?;
    let value: f64 = value.parse().ok()?;
    value.is_finite().then_some((name, value))
}

/// The byte just past the `}` closing the label set that `text` opens with `{`; quoted label
/// values may hold `}`, `,`, spaces and escaped quotes.
fn labels_end(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM_V1: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 5.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.25
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12800.0
vllm:prefix_cache_queries_created{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.7e+09
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 6400.0
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",num_gpu_blocks="27000"} 1.0
"#;

    #[test]
    fn reads_vllm_v1_summing_engines() {
        let load = parse_load(Engine::Vllm, VLLM_V1).expect("load");
        assert_eq!(load.waiting, 5.0);
        assert_eq!(load.running, 3.0);
        assert_eq!(load.kv_usage, Some(0.375));
        assert_eq!(load.prefix_hit_tokens, Some(6400.0));
        assert_eq!(load.prefix_query_tokens, Some(12800.0));
        assert_eq!(load.cache_tokens, Some(16.0 * 27000.0));
        assert_eq!(parse_load(Engine::Ray, VLLM_V1), Some(load));
    }

    #[test]
    fn reads_vllm_v0_cache_name_and_openmetrics_counters() {
        let text = "vllm:num_requests_running{model_name=\"m\"} 4\n\
                    vllm:num_requests_waiting{model_name=\"m\"} 1 1700000000000\n\
                    vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\n\
                    vllm:prefix_cache_hits{model_name=\"m\"} 10\n\
                    # EOF\n";
        let load = parse_load(Engine::Vllm, text).expect("load");
        assert_eq!((load.waiting, load.running), (1.0, 4.0));
        assert_eq!(load.kv_usage, Some(0.9));
        assert_eq!(load.prefix_hit_tokens, Some(10.0));
        assert_eq!(load.prefix_query_tokens, None);
        assert_eq!(load.cache_tokens, None);
    }

    #[test]
    fn cache_size_from_info_labels() {
        let text = "vllm:num_requests_running 1\n\
                    vllm:cache_config_info{block_size=\"16\",prefix=\"a=\\\"b\\\"\",num_gpu_blocks=\"100\"} 1\n\
                    vllm:cache_config_info_extra{block_size=\"1\",num_gpu_blocks=\"1\"} 1\n";
        let load = parse_load(Engine::Vllm, text).expect("load");
        assert_eq!(load.cache_tokens, Some(1600.0));
        assert_eq!(label_value("a=\"1\", b=\"x\\\"y\"", "b"), Some("x\\\"y"));
        assert_eq!(label_value("a=\"1\"", "c"), None);
    }

    #[test]
    fn reads_vllm_through_rays_metrics_agent() {
        let text = "# TYPE ray_vllm:num_requests_running gauge\n\
                    ray_vllm:num_requests_running{Component=\"core_worker\",NodeAddress=\"10.0.0.5\",SessionName=\"session_x\",WorkerId=\"ab\",model_name=\"m\",engine=\"0\"} 3.0\n\
                    ray_vllm:num_requests_waiting{model_name=\"m\",engine=\"0\"} 1.0\n\
                    ray_vllm:kv_cache_usage_perc{model_name=\"m\",engine=\"0\"} 0.4\n";
        let load = parse_load(Engine::Ray, text).expect("load");
        assert_eq!(
            (load.waiting, load.running, load.kv_usage),
            (1.0, 3.0, Some(0.4))
        );
    }

    #[test]
    fn v1_cache_name_wins_over_v0() {
        let text = "vllm:num_requests_running 0\nvllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\n";
        let load = parse_load(Engine::Vllm, text).expect("load");
        assert_eq!(load.kv_usage, Some(0.1));
    }

    #[test]
    fn reads_sglang() {
        let text = r#"# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 7.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="Qwen/Qwen2.5-7B-Instruct"} 3.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.62
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.41
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="Qwen/Qwen2.5-7B-Instruct"} 2000.0
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{model_name="Qwen/Qwen2.5-7B-Instruct"} 800.0
"#;
        let load = parse_load(Engine::Sglang, text).expect("load");
        assert_eq!((load.waiting, load.running), (3.0, 7.0));
        assert_eq!(load.kv_usage, Some(0.62));
        assert_eq!(load.prefix_hit_tokens, Some(800.0));
        assert_eq!(load.prefix_query_tokens, Some(2000.0));
        assert_eq!(parse_load(Engine::Vllm, text), None, "not vLLM's names");
    }

    #[test]
    fn reads_llamacpp() {
        let text = "# HELP llamacpp:requests_processing Number of requests processing.\n\
                    # TYPE llamacpp:requests_processing gauge\n\
                    llamacpp:requests_processing 2\n\
                    # TYPE llamacpp:requests_deferred gauge\n\
                    llamacpp:requests_deferred 6\n\
                    # TYPE llamacpp:prompt_tokens_total counter\n\
                    llamacpp:prompt_tokens_total 4096\n";
        let load = parse_load(Engine::Llamacpp, text).expect("load");
        assert_eq!((load.waiting, load.running), (6.0, 2.0));
        assert_eq!(load.kv_usage, None);
        assert_eq!(load.prefix_hit_tokens, None);
        let with_kv = format!("{text}llamacpp:kv_cache_usage_ratio 0.3\n");
        let load = parse_load(Engine::Llamacpp, &with_kv).expect("load");
        assert_eq!(load.kv_usage, Some(0.3));
    }

    #[test]
    fn awkward_labels_values_and_lines() {
        let text = concat!(
            "vllm:num_requests_running{model_name=\"a, b} c\",x=\"say \\\"hi\\\" \\\\\"} 2\n",
            "   vllm:num_requests_running{model_name=\"nan\"} NaN\n",
            "vllm:num_requests_running{model_name=\"inf\"} +Inf\n",
            "vllm:num_requests_running{model_name=\"broken\" 5\n",
            "vllm:num_requests_running{} 1e0\n",
            "vllm:num_requests_running_extra 100\n",
            "#vllm:num_requests_running 100\n",
            "vllm:num_requests_waiting \t 3 1700000000\n",
            "vllm:num_requests_waiting{engine=\"1\"} -1\n",
            "\n",
            "vllm:kv_cache_usage_perc{engine=\"0\"} 1.7\n",
        );
        let load = parse_load(Engine::Vllm, text).expect("load");
        assert_eq!(load.running, 3.0);
        assert_eq!(load.waiting, 2.0);
        assert_eq!(load.kv_usage, Some(1.0), "clamped to a fraction");
    }

    #[test]
    fn nothing_to_read() {
        assert_eq!(parse_load(Engine::Vllm, ""), None);
        assert_eq!(parse_load(Engine::Vllm, "<html>not metrics</html>"), None);
        assert_eq!(parse_load(Engine::Ollama, VLLM_V1), None);
        assert_eq!(parse_load(Engine::Openai, VLLM_V1), None);
        assert_eq!(sample("{a=\"b\"} 1"), None);
        assert_eq!(sample("x{a=\"b\"}"), None);
        assert_eq!(sample("x 1 2"), Some(("x", 1.0)));
    }
}
