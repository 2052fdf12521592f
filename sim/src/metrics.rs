//! `GET /metrics`: the node's counters in Prometheus text format under the metric names of the
//! engine it imitates (vLLM V1, SGLang or llama.cpp). Pure: counters in, text out.

use std::fmt::Write;

use super::config::Engine;
use super::stats::{Counters, ModelCounters};

/// What the text is rendered from.
#[derive(Debug, Clone)]
pub struct MetricsInput<'a> {
    pub engine: Engine,
    pub counters: &'a Counters,
    /// Referenced KV blocks over capacity (0..1).
    pub kv_cache_usage: f64,
    pub block_tokens: usize,
    pub cache_blocks: usize,
}

/// Renders the metrics page.
pub fn render(input: &MetricsInput<'_>) -> String {
    let mut out = String::new();
    match input.engine {
        Engine::Vllm => render_vllm(&mut out, input),
        Engine::Sglang => render_sglang(&mut out, input),
        Engine::Llamacpp => render_llamacpp(&mut out, input),
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One line per model: `name{model_name="m"} value`.
fn per_model(
    out: &mut String,
    input: &MetricsInput<'_>,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&ModelCounters) -> f64,
) {
    header(out, name, kind, help);
    for (model, m) in &input.counters.models {
        let _ = writeln!(
            out,
            "{name}{{model_name=\"{}\"}} {}",
            escape(model),
            value(m)
        );
    }
}

fn render_vllm(out: &mut String, input: &MetricsInput<'_>) {
    let usage = input.kv_cache_usage;
    header(
        out,
        "vllm:cache_config_info",
        "gauge",
        "Information of the LLMEngine CacheConfig",
    );
    let _ = writeln!(
        out,
        "vllm:cache_config_info{{block_size=\"{}\",num_gpu_blocks=\"{}\"}} 1",
        input.block_tokens, input.cache_blocks
    );
    per_model(
        out,
        input,
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        |m| m.running as f64,
    );
    per_model(
        out,
        input,
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        |m| m.waiting as f64,
    );
    per_model(
        out,
        input,
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        |_| usage,
    );
    per_model(
        out,
        input,
        "vllm:prefix_cache_queries_total",
        "counter",
        "Prefix cache queries, in terms of number of queried tokens.",
        |m| m.prefix_query_tokens as f64,
    );
    per_model(
        out,
        input,
        "vllm:prefix_cache_hits_total",
        "counter",
        "Prefix cache hits, in terms of number of cached tokens.",
        |m| m.prefix_hit_tokens as f64,
    );
    per_model(
        out,
        input,
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        |m| m.prompt_tokens as f64,
    );
    per_model(
        out,
        input,
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        |m| m.generation_tokens as f64,
    );
    per_model(
        out,
        input,
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        |m| m.success as f64,
    );
    let name = "vllm:time_to_first_token_seconds";
    header(
        out,
        name,
        "histogram",
        "Histogram of time to first token in seconds.",
    );
    for (model, m) in &input.counters.models {
        let label = escape(model);
        for (le, count) in m.ttft.cumulative() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\",model_name=\"{label}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\",model_name=\"{label}\"}} {}",
            m.ttft.count
        );
        let _ = writeln!(out, "{name}_sum{{model_name=\"{label}\"}} {}", m.ttft.sum);
        let _ = writeln!(
            out,
            "{name}_count{{model_name=\"{label}\"}} {}",
            m.ttft.count
        );
    }
}

fn render_sglang(out: &mut String, input: &MetricsInput<'_>) {
    let usage = input.kv_cache_usage;
    per_model(
        out,
        input,
        "sglang:num_running_reqs",
        "gauge",
        "The number of running requests.",
        |m| m.running as f64,
    );
    per_model(
        out,
        input,
        "sglang:num_queue_reqs",
        "gauge",
        "The number of requests in the waiting queue.",
        |m| m.waiting as f64,
    );
    per_model(
        out,
        input,
        "sglang:token_usage",
        "gauge",
        "The token usage.",
        |_| usage,
    );
    per_model(
        out,
        input,
        "sglang:cache_hit_rate",
        "gauge",
        "The prefix cache hit rate.",
        |m| {
            if m.prefix_query_tokens == 0 {
                0.0
            } else {
                m.prefix_hit_tokens as f64 / m.prefix_query_tokens as f64
            }
        },
    );
}

fn render_llamacpp(out: &mut String, input: &MetricsInput<'_>) {
    // llama.cpp serves one model and labels nothing: node totals.
    let c = input.counters;
    header(
        out,
        "llamacpp:requests_processing",
        "gauge",
        "Number of requests processing.",
    );
    let _ = writeln!(out, "llamacpp:requests_processing {}", c.running());
    header(
        out,
        "llamacpp:requests_deferred",
        "gauge",
        "Number of requests deferred.",
    );
    let _ = writeln!(out, "llamacpp:requests_deferred {}", c.waiting());
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The value of `name{model_name="model"}` (or unlabelled `name`) in a metrics page.
pub fn sample(text: &str, name: &str, model: Option<&str>) -> Option<f64> {
    let wanted = match model {
        Some(m) => format!("{name}{{model_name=\"{}\"}} ", escape(m)),
        None => format!("{name} "),
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> Counters {
        let mut c = Counters::new(&["m1".into(), "m\"2".into()]);
        let m = c.model("m1");
        m.running = 3;
        m.waiting = 2;
        m.prefix_hit_tokens = 32;
        m.prefix_query_tokens = 128;
        m.ttft.observe(0.03);
        c
    }

    fn input(engine: Engine, c: &Counters) -> MetricsInput<'_> {
        MetricsInput {
            engine,
            counters: c,
            kv_cache_usage: 0.25,
            block_tokens: 16,
            cache_blocks: 64,
        }
    }

    #[test]
    fn vllm_names_and_labels() {
        let c = counters();
        let text = render(&input(Engine::Vllm, &c));
        assert_eq!(
            sample(&text, "vllm:num_requests_running", Some("m1")),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, "vllm:num_requests_waiting", Some("m1")),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "vllm:kv_cache_usage_perc", Some("m1")),
            Some(0.25)
        );
        assert_eq!(
            sample(&text, "vllm:prefix_cache_hits_total", Some("m1")),
            Some(32.0)
        );
        assert_eq!(
            sample(&text, "vllm:prefix_cache_queries_total", Some("m1")),
            Some(128.0)
        );
        assert_eq!(
            sample(&text, "vllm:num_requests_running", Some("m\"2")),
            Some(0.0)
        );
        assert!(text.contains("vllm:num_requests_running{model_name=\"m\\\"2\"} 0"));
        assert!(text.contains("# TYPE vllm:time_to_first_token_seconds histogram"));
        assert!(text
            .contains("vllm:time_to_first_token_seconds_bucket{le=\"0.04\",model_name=\"m1\"} 1"));
        assert!(text
            .contains("vllm:time_to_first_token_seconds_bucket{le=\"0.02\",model_name=\"m1\"} 0"));
        assert_eq!(
            sample(&text, "vllm:time_to_first_token_seconds_count", Some("m1")),
            Some(1.0)
        );
        assert!(text.contains("num_gpu_blocks=\"64\""));
    }

    #[test]
    fn sglang_names() {
        let c = counters();
        let text = render(&input(Engine::Sglang, &c));
        assert_eq!(
            sample(&text, "sglang:num_running_reqs", Some("m1")),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, "sglang:num_queue_reqs", Some("m1")),
            Some(2.0)
        );
        assert_eq!(sample(&text, "sglang:token_usage", Some("m1")), Some(0.25));
        assert_eq!(
            sample(&text, "sglang:cache_hit_rate", Some("m1")),
            Some(0.25)
        );
        assert!(!text.contains("vllm:"));
    }

    #[test]
    fn llamacpp_names_are_node_totals() {
        let c = counters();
        let text = render(&input(Engine::Llamacpp, &c));
        assert_eq!(
            sample(&text, "llamacpp:requests_processing", None),
            Some(3.0)
        );
        assert_eq!(sample(&text, "llamacpp:requests_deferred", None), Some(2.0));
    }
}
