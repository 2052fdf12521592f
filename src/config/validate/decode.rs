//! Decoding one section or element of the parsed document into its raw serde type, and mapping
//! serde's messages (which carry a relative key path) to positions in the file.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::Checker;
use crate::config::spans::{child_index, child_key};

impl Checker {
    /// Decodes the value at `path`; `None` when absent, null, or invalid (the error is recorded).
    ///
    /// A value that does not decode is re-serialized and parsed with `serde_yaml::from_str`, whose
    /// errors carry the path inside the value (`servers[0].weight`), which the span index turns
    /// into a position.
    pub(super) fn decode<T: DeserializeOwned>(
        &mut self,
        value: Option<&Value>,
        path: &str,
    ) -> Option<T> {
        let value = value.filter(|value| !value.is_null())?;
        // Fast path: most elements are valid. Only a failure pays for the text round trip that
        // yields an error with the path inside the element.
        if let Ok(decoded) = T::deserialize(value) {
            return Some(decoded);
        }
        let decoded = serde_yaml::to_string(value).and_then(|text| serde_yaml::from_str(&text));
        match decoded {
            Ok(decoded) => Some(decoded),
            Err(error) => {
                self.decode_error(path, &error);
                None
            }
        }
    }

    fn decode_error(&mut self, base: &str, error: &serde_yaml::Error) {
        let mut message = error.to_string();
        if let Some(location) = error.location() {
            let at = format!(" at line {} column {}", location.line(), location.column());
            message = message.replacen(&at, "", 1);
        }
        let (relative, message) = split_path(&message);
        let path = join_relative(base, relative);
        match unknown_field(message) {
            Some(field) => {
                let mut key = child_key(&path, field);
                if self.spans().get(&key).is_none() {
                    key = self.spans().find_below(&path, field).unwrap_or(key);
                }
                self.at_key(&key, message.replacen("unknown field", "unknown key", 1));
            }
            None => self.at_value(&path, message),
        }
    }

    /// The entries of the mapping at `path` whose keys are in `known`; reports other keys and a
    /// value that is not a mapping. A null or absent value has no entries.
    pub(super) fn sections<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Vec<(String, &'v Value)> {
        let entries = self.mapping(Some(value), path);
        let mut kept = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if known.contains(&key.as_str()) {
                kept.push((key, value));
            } else {
                let expected = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>();
                let message = format!(
                    "unknown key `{key}`, expected one of {}",
                    expected.join(", ")
                );
                self.at_key(&child_key(path, &key), message);
            }
        }
        kept
    }

    /// The entries of the mapping at `path` with string keys, in file order.
    pub(super) fn mapping<'v>(
        &mut self,
        value: Option<&'v Value>,
        path: &str,
    ) -> Vec<(String, &'v Value)> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(mapping)) => {
                let mut entries = Vec::with_capacity(mapping.len());
                for (key, value) in mapping {
                    match key {
                        Value::String(key) => entries.push((key.clone(), value)),
                        _ => self.at_value(path, "mapping keys must be strings"),
                    }
                }
                entries
            }
            Some(_) => {
                self.at_value(path, "expected a mapping");
                Vec::new()
            }
        }
    }

    /// The elements of the sequence at `path` with their paths.
    pub(super) fn sequence<'v>(
        &mut self,
        value: Option<&'v Value>,
        path: &str,
    ) -> Vec<(String, &'v Value)> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| (child_index(path, index), item))
                .collect(),
            Some(_) => {
                self.at_value(path, "expected a list");
                Vec::new()
            }
        }
    }
}

/// Splits serde_yaml's `path: message` (no prefix, or `.`, for the root).
fn split_path(message: &str) -> (&str, &str) {
    match message.split_once(": ") {
        // A path has no spaces; messages like "invalid type: ..." do.
        Some((path, rest)) if !path.contains(char::is_whitespace) => (path, rest),
        _ => ("", message),
    }
}

fn join_relative(base: &str, relative: &str) -> String {
    match relative {
        "" | "." => base.to_string(),
        _ if relative.starts_with('[') || base.is_empty() => format!("{base}{relative}"),
        _ => format!("{base}.{relative}"),
    }
}

/// `unknown field `x`, expected ...` → `x`.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths_from_messages() {
        assert_eq!(
            split_path("servers[0].weight: invalid type: string \"x\", expected u32"),
            (
                "servers[0].weight",
                "invalid type: string \"x\", expected u32"
            )
        );
        assert_eq!(
            split_path("invalid type: integer `3`, expected a string"),
            ("", "invalid type: integer `3`, expected a string")
        );
        assert_eq!(
            split_path("missing field `name`"),
            ("", "missing field `name`")
        );
    }

    #[test]
    fn joins_relative_paths() {
        assert_eq!(join_relative("routes[1]", ""), "routes[1]");
        assert_eq!(join_relative("routes[1]", "hosts[0]"), "routes[1].hosts[0]");
        assert_eq!(
            join_relative("listeners.extra", "[0]"),
            "listeners.extra[0]"
        );
        assert_eq!(join_relative("", "a.b"), "a.b");
    }

    #[test]
    fn extracts_unknown_field_names() {
        assert_eq!(
            unknown_field("unknown field `upstrem`, expected one of `name`"),
            Some("upstrem")
        );
        assert_eq!(unknown_field("missing field `name`"), None);
    }
}
