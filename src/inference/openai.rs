//! OpenAI request/response helpers: the `model` and prompt text of a request body, and the error
//! JSON shape clients expect (`{"error":{"message","type","param","code"}}`).

use serde_json::{json, Value};

use super::scan;

/// Why a request body could not be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, or not a JSON object.
    Malformed(String),
    /// No string `model` field.
    MissingModel,
}

/// A parsed inference request: what routing needs from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceRequest {
    pub model: String,
    /// Prompt text (chat messages concatenated, or `prompt`/`input`), for the prefix index.
    pub prompt: String,
    /// The body's `user` field, a session-affinity key.
    pub user: Option<String>,
    pub stream: bool,
    /// The first message's role and text, when read whole.
    pub lead: Option<(String, String)>,
}

/// Parses a whole OpenAI request body (checked to be JSON); the bytes themselves are forwarded
/// untouched by the caller.
pub fn parse_request(body: &[u8]) -> Result<InferenceRequest, BodyError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(BodyError::Malformed(
            "request body must be a JSON object".into(),
        ));
    }
    let scanned = scan::scan(body)
        .map_err(|scan::NotJson| BodyError::Malformed("not a JSON object".into()))?;
    from_scan(scanned)
}

/// Parses the first bytes of a body too large to hold: the rest is not seen, so only what is
/// there is checked.
pub fn parse_prefix(prefix: &[u8]) -> Result<InferenceRequest, BodyError> {
    let scanned = scan::scan(prefix).map_err(|scan::NotJson| {
        BodyError::Malformed("the request body is not a JSON object".into())
    })?;
    from_scan(scanned)
}

fn from_scan(scanned: scan::Scanned) -> Result<InferenceRequest, BodyError> {
    Ok(InferenceRequest {
        model: scanned.model.ok_or(BodyError::MissingModel)?,
        prompt: scanned.prompt,
        user: scanned.user,
        stream: scanned.stream.unwrap_or(false),
        lead: scanned.lead,
    })
}

/// OpenAI error JSON, e.g. `error_json("model `x` does not exist", "invalid_request_error",
/// Some("model"), Some("model_not_found"))`.
pub fn error_json(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> String {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}}).to_string()
}

/// The 404 body for a model no server of the upstream serves.
pub fn model_not_found(model: &str) -> String {
    error_json(
        &format!("The model `{model}` does not exist"),
        "invalid_request_error",
        Some("model"),
        Some("model_not_found"),
    )
}

/// The 400 body for a body that cannot be parsed.
pub fn bad_request(err: &BodyError) -> String {
    let (msg, param) = match err {
        BodyError::Malformed(e) => (format!("We could not parse the JSON body: {e}"), None),
        BodyError::MissingModel => (
            "you must provide a model parameter".to_string(),
            Some("model"),
        ),
    };
    error_json(&msg, "invalid_request_error", param, None)
}

/// `GET /v1/models` body for a merged, de-duplicated model list.
pub fn models_list(models: &[String]) -> String {
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "owned_by": "ferrogate"}))
        .collect();
    json!({"object": "list", "data": data}).to_string()
}

/// The model ids in a server's `GET /v1/models` response.
pub fn parse_models(body: &[u8]) -> Option<Vec<String>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let data = value.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chat_body() {
        let body = br#"{"model":"llama","stream":true,"user":"u1","messages":[{"role":"system","content":"be nice"},{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
        let r = parse_request(body).unwrap();
        assert_eq!(r.model, "llama");
        assert!(r.stream);
        assert_eq!(r.user.as_deref(), Some("u1"));
        assert_eq!(r.prompt, "be nice\nhi\n");
    }

    #[test]
    fn parses_completion_and_rejects_bad_bodies() {
        let r = parse_request(br#"{"model":"m","prompt":"abc"}"#).unwrap();
        assert_eq!(r.prompt, "abc");
        assert!(matches!(
            parse_request(b"{not json"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"[1]"),
            Err(BodyError::Malformed(_))
        ));
        assert_eq!(
            parse_request(br#"{"prompt":"x"}"#),
            Err(BodyError::MissingModel)
        );
    }

    #[test]
    fn error_shapes() {
        let v: Value = serde_json::from_str(&model_not_found("x")).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let v: Value = serde_json::from_str(&bad_request(&BodyError::MissingModel)).unwrap();
        assert_eq!(v["error"]["code"], Value::Null);
    }

    #[test]
    fn models_roundtrip() {
        let list = models_list(&["a".into(), "b".into()]);
        assert_eq!(parse_models(list.as_bytes()).unwrap(), vec!["a", "b"]);
        assert_eq!(parse_models(b"{}"), None);
    }
}
