//! The token endpoints over HTTP: `/tokenize` and render agree with what a completion counts,
//! unknown models are refused, and the SGLang info endpoints answer.

use serde_json::{json, Value};

use super::client::request;
use super::{chat, fast};
use crate::start;

#[tokio::test]
async fn tokenize_and_render_count_what_the_completion_counts() {
    let node = start(fast(&["m"])).await.unwrap();
    let body = chat("m", &"t".repeat(99), json!({"max_tokens": 2}));
    let (head, text) = request(node.addr(), "POST", "/tokenize", &body).await;
    assert_eq!(head.status, 200, "{text}");
    let tokenized: Value = serde_json::from_str(&text).unwrap();
    let (_, text) = request(node.addr(), "POST", "/v1/chat/completions/render", &body).await;
    let rendered: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rendered["token_ids"], tokenized["tokens"]);
    assert_eq!(rendered["model"], "m");
    let (_, text) = request(node.addr(), "POST", "/v1/chat/completions", &body).await;
    let completion: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(completion["usage"]["prompt_tokens"], tokenized["count"]);
    // Render and tokenize generate nothing.
    assert_eq!(node.stats().totals.requests, 1);

    let (head, text) = request(
        node.addr(),
        "POST",
        "/v1/completions/render",
        r#"{"model":"m","prompt":"abcdefgh"}"#,
    )
    .await;
    assert_eq!(head.status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 2);
    assert!(v["request_id"]
        .as_str()
        .unwrap()
        .starts_with("cmpl-render-"));
}

#[tokio::test]
async fn token_endpoints_refuse_unknown_models_and_bad_json() {
    let node = start(fast(&["m"])).await.unwrap();
    let (head, text) = request(
        node.addr(),
        "POST",
        "/tokenize",
        r#"{"model":"x","prompt":"a"}"#,
    )
    .await;
    assert_eq!(head.status, 404);
    assert!(text.contains("model_not_found"));
    let (head, _) = request(node.addr(), "POST", "/v1/chat/completions/render", "{oops").await;
    assert_eq!(head.status, 400);
    let (head, _) = request(node.addr(), "GET", "/tokenize", "").await;
    assert_eq!(head.status, 405);
}

#[tokio::test]
async fn sglang_info_and_version_answer() {
    let node = start(fast(&["m"])).await.unwrap();
    for path in ["/get_server_info", "/server_info"] {
        let (head, text) = request(node.addr(), "GET", path, "").await;
        assert_eq!(head.status, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["model_path"], "m");
        assert_eq!(v["max_total_num_tokens"], 2048 * 16);
    }
    for path in ["/get_model_info", "/model_info"] {
        let (_, text) = request(node.addr(), "GET", path, "").await;
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["is_generation"],
            true
        );
    }
    let (head, text) = request(node.addr(), "GET", "/version", "").await;
    assert_eq!(head.status, 200);
    assert!(text.contains("ferrogate-sim"));
}
