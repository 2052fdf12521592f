//! The OpenAI error bodies the node answers with (`{"error":{"message","type","param","code"}}`):
//! unparsable requests, unknown models, unknown routes, and its own 503 refusals.

use serde::Serialize;

use super::request::BodyError;

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// One error body, e.g. `error_json("…", "invalid_request_error", Some("model"),
/// Some("model_not_found"))`.
pub fn error_json(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> String {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param,
            code,
        },
    };
    serde_json::to_string(&body).unwrap_or_else(|_| String::from("{}"))
}

/// 400 body of a request the node cannot read.
pub fn invalid_request(message: &str) -> String {
    error_json(message, "invalid_request_error", None, None)
}

/// 400 body of a completion body that does not parse.
pub fn bad_body(err: &BodyError) -> String {
    match err {
        BodyError::Malformed(e) => {
            invalid_request(&format!("We could not parse the JSON body: {e}"))
        }
        BodyError::MissingModel => error_json(
            "you must provide a model parameter",
            "invalid_request_error",
            Some("model"),
            None,
        ),
    }
}

/// 404 body of a model the node does not serve.
pub fn model_not_found(model: &str) -> String {
    error_json(
        &format!("The model `{model}` does not exist"),
        "invalid_request_error",
        Some("model"),
        Some("model_not_found"),
    )
}

/// 503 body when the waiting queue is full.
pub fn overloaded() -> String {
    error_json(
        "The server is overloaded: too many requests waiting",
        "server_error",
        None,
        Some("overloaded"),
    )
}

/// 503 body of an injected error.
pub fn injected_error() -> String {
    error_json(
        "Injected fault: the node failed this request",
        "server_error",
        None,
        Some("service_unavailable"),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parsed(body: &str) -> Value {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn every_body_has_the_openai_shape() {
        let v = parsed(&model_not_found("x"));
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("`x`"));
        let v = parsed(&bad_body(&BodyError::MissingModel));
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], Value::Null);
        let v = parsed(&bad_body(&BodyError::Malformed("eof".into())));
        assert_eq!(v["error"]["param"], Value::Null);
        assert!(v["error"]["message"].as_str().unwrap().ends_with("eof"));
        let v = parsed(&overloaded());
        assert_eq!(v["error"]["code"], "overloaded");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(
            parsed(&injected_error())["error"]["code"],
            "service_unavailable"
        );
    }
}
