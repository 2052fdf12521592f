//! `routes[].match`: methods, header and query conditions, client ranges and the client
//! certificate; every condition keeps its own position for errors (a bad regex at its key).

use serde_yaml::Value;

use super::Checker;
use crate::config::model::{Condition, Pattern, RouteMatch};
use crate::config::raw::{RawCondition, RawMatch};
use crate::config::spans::{child_index, child_key};

/// The one `client_cert` condition.
const CLIENT_CERT_REQUIRED: &str = "required";

/// What a route's `match` may rely on from its listener.
pub(super) struct MatchContext<'a> {
    /// The listener the route serves.
    pub listener: &'a str,
    /// Whether that listener asks for client certificates.
    pub client_auth: bool,
}

impl Checker {
    /// The `match` at `path`; `None` when it has errors (reported).
    pub(super) fn route_match(
        &mut self,
        path: &str,
        raw: &RawMatch,
        context: MatchContext<'_>,
    ) -> Option<RouteMatch> {
        let errors_before = self.error_count();
        let mut matcher = RouteMatch::default();
        if let Some(methods) = &raw.methods {
            let methods_path = child_key(path, "methods");
            if methods.is_empty() {
                self.at_value(&methods_path, "name at least one method or remove the key");
            }
            for (index, method) in methods.iter().enumerate() {
                let upper = method.to_ascii_uppercase();
                match http::Method::from_bytes(upper.as_bytes()) {
                    Ok(method) if !method.as_str().is_empty() => matcher.methods.push(method),
                    _ => self.at_value(
                        &child_index(&methods_path, index),
                        format!("`{method}` is not an HTTP method"),
                    ),
                }
            }
        }
        if let Some(headers) = &raw.headers {
            let headers_path = child_key(path, "headers");
            for (name, value) in self.named_entries(headers, &headers_path) {
                let entry_path = child_key(&headers_path, &name);
                let header = http::HeaderName::from_bytes(name.as_bytes());
                let condition = self.condition(&entry_path, value);
                match (header, condition) {
                    (Ok(header), Some(condition)) => matcher.headers.push((header, condition)),
                    (Err(_), _) => {
                        self.at_key(&entry_path, format!("`{name}` is not a valid header name"))
                    }
                    _ => {}
                }
            }
        }
        if let Some(query) = &raw.query {
            let query_path = child_key(path, "query");
            for (name, value) in self.named_entries(query, &query_path) {
                let entry_path = child_key(&query_path, &name);
                if let Some(condition) = self.condition(&entry_path, value) {
                    matcher.query.push((name, condition));
                }
            }
        }
        matcher.client = self.cidr_list(&child_key(path, "client"), raw.client.as_deref());
        if let Some(cert) = &raw.client_cert {
            let cert_path = child_key(path, "client_cert");
            if cert != CLIENT_CERT_REQUIRED {
                self.at_value(
                    &cert_path,
                    format!("unknown client_cert condition `{cert}`: expected `required`"),
                );
            } else if !context.client_auth {
                let message = format!(
                    "client_cert needs `client_auth` on the route's listener `{}`",
                    context.listener
                );
                self.at_value(&cert_path, message);
            }
            matcher.client_cert = true;
        }
        let conditions = raw.methods.is_some()
            || raw.headers.as_ref().is_some_and(|h| !h.is_empty())
            || raw.query.as_ref().is_some_and(|q| !q.is_empty())
            || raw.client.is_some()
            || raw.client_cert.is_some();
        if !conditions {
            self.at_value(
                path,
                "`match` names no condition (methods, headers, query, client, client_cert); remove it",
            );
        }
        (self.error_count() == errors_before).then_some(matcher)
    }

    /// The entries of a mapping of names (header or parameter names) with string keys.
    fn named_entries<'v>(
        &mut self,
        mapping: &'v serde_yaml::Mapping,
        path: &str,
    ) -> Vec<(String, &'v Value)> {
        let mut entries = Vec::with_capacity(mapping.len());
        for (key, value) in mapping {
            match key {
                Value::String(name) if !name.is_empty() => entries.push((name.clone(), value)),
                _ => self.at_value(path, "names must be non-empty strings"),
            }
        }
        entries
    }

    /// `present`, `absent`, or a mapping with exactly one of `equals`, `prefix`, `regex`.
    fn condition(&mut self, path: &str, value: &Value) -> Option<Condition> {
        const EXPECTED: &str =
            "expected `present`, `absent`, or one of `{ equals: … }`, `{ prefix: … }`, `{ regex: … }`";
        match value {
            Value::String(word) if word == "present" => return Some(Condition::Present),
            Value::String(word) if word == "absent" => return Some(Condition::Absent),
            Value::Mapping(_) => {}
            _ => {
                self.at_value(path, format!("unknown condition: {EXPECTED}"));
                return None;
            }
        }
        let errors_before = self.error_count();
        let raw = self.decode::<RawCondition>(Some(value), path)?;
        let given = [&raw.equals, &raw.prefix, &raw.regex]
            .iter()
            .filter(|v| v.is_some())
            .count();
        // None left after an unknown key was reported: that error says it.
        if given == 0 && self.error_count() > errors_before {
            return None;
        }
        if given != 1 {
            self.at_value(path, format!("a condition has exactly one key: {EXPECTED}"));
            return None;
        }
        if let Some(text) = raw.equals {
            return Some(Condition::Equals(text));
        }
        if let Some(text) = raw.prefix {
            return Some(Condition::Prefix(text));
        }
        let source = raw.regex.unwrap_or_default();
        match Pattern::new(&source) {
            Ok(pattern) => Some(Condition::Regex(pattern)),
            Err(error) => {
                self.at_value(&child_key(path, "regex"), invalid_regex(&error));
                None
            }
        }
    }
}

/// The message for a regex that does not compile.
pub(super) fn invalid_regex(error: &regex::Error) -> String {
    // regex's own message spans several lines with a caret under the mistake.
    let detail = error.to_string();
    let detail = detail.lines().collect::<Vec<_>>().join(" ");
    format!("invalid regex (Rust regex syntax): {detail}")
}
