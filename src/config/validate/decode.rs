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
    /// into a position. An unknown key is reported, removed, and the rest decoded again, so that
    /// an element with a misspelt key still gets its other errors (and its checks) reported.
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
        let mut value = value.clone();
        // Unknown keys removed: the relative path of their mapping, and the key.
        let mut pruned: Vec<(String, String)> = Vec::new();
        loop {
            let decoded =
                serde_yaml::to_string(&value).and_then(|text| serde_yaml::from_str(&text));
            let error = match decoded {
                Ok(decoded) => return Some(decoded),
                Err(error) => error,
            };
            let message = message_of(&error);
            let (relative, message) = split_path(&message);
            let relative = relative.trim_start_matches('.');
            if let Some(field) = unknown_field(message) {
                self.unknown_key(&join_relative(path, relative), field, message);
                match remove_key(&mut value, relative, field) {
                    Some(removed_from) => {
                        pruned.push((removed_from, field.to_string()));
                        continue;
                    }
                    None => return None,
                }
            }
            // A required key missing beside an unknown key that looks like it is that key
            // misspelt: the unknown key's error already names the expected keys.
            let misspelt = missing_field(message).is_some_and(|missing| {
                pruned
                    .iter()
                    .any(|(at, unknown)| at == relative && looks_like(unknown, missing))
            });
            if !misspelt {
                self.at_value(&join_relative(path, relative), message);
            }
            return None;
        }
    }

    /// Reports the unknown key `field` of the mapping at `path` (found below it when serde lost
    /// the path, as for values buffered by tagged enums).
    fn unknown_key(&mut self, path: &str, field: &str, message: &str) {
        let mut key = child_key(path, field);
        if self.spans().get(&key).is_none() {
            key = self.spans().find_below(path, field).unwrap_or(key);
        }
        self.at_key(&key, message.replacen("unknown field", "unknown key", 1));
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

/// serde_yaml's message without its ` at line L column C` (a position in the re-serialized text,
/// not in the file).
fn message_of(error: &serde_yaml::Error) -> String {
    let message = error.to_string();
    match error.location() {
        Some(location) => {
            let at = format!(" at line {} column {}", location.line(), location.column());
            message.replacen(&at, "", 1)
        }
        None => message,
    }
}

/// The place of a key removed by searching (it matches no serde path).
const FOUND_BY_SEARCH: &str = "?";

/// Removes the key `field` from the mapping at `relative` in `root`, or, when serde's path does
/// not lead to one that has it, from the first mapping below that has. Returns the relative path
/// of the mapping it left ([`FOUND_BY_SEARCH`] when it was searched for); `None` when no mapping
/// has it.
fn remove_key(root: &mut Value, relative: &str, field: &str) -> Option<String> {
    let Some(at) = value_at(root, relative) else {
        return remove_below(root, field).then(|| FOUND_BY_SEARCH.to_string());
    };
    if let Value::Mapping(mapping) = at {
        if mapping.shift_remove(field).is_some() {
            return Some(relative.to_string());
        }
    }
    remove_below(at, field).then(|| FOUND_BY_SEARCH.to_string())
}

/// The value at serde_yaml's relative path (`a.b[0].c`; empty for the root).
fn value_at<'v>(root: &'v mut Value, relative: &str) -> Option<&'v mut Value> {
    let mut current = root;
    if relative.is_empty() {
        return Some(current);
    }
    for segment in relative.split('.') {
        let (key, indices) = segment.split_at(segment.find('[').unwrap_or(segment.len()));
        if !key.is_empty() {
            current = current.as_mapping_mut()?.get_mut(key)?;
        }
        for index in indices.split_terminator(']') {
            let index: usize = index.strip_prefix('[')?.parse().ok()?;
            current = current.as_sequence_mut()?.get_mut(index)?;
        }
    }
    Some(current)
}

/// Removes `field` from the first mapping at or below `value` (in file order) that has it.
fn remove_below(value: &mut Value, field: &str) -> bool {
    match value {
        Value::Mapping(mapping) => {
            mapping.shift_remove(field).is_some()
                || mapping.values_mut().any(|child| remove_below(child, field))
        }
        Value::Sequence(items) => items.iter_mut().any(|child| remove_below(child, field)),
        Value::Tagged(tagged) => remove_below(&mut tagged.value, field),
        _ => false,
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

/// `missing field `x`` → `x`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

/// Whether `written` is likely a misspelling of `key` (the similarity clap uses for "did you
/// mean").
pub(super) fn looks_like(written: &str, key: &str) -> bool {
    /// Jaro similarity above which two names are taken for the same one.
    const SIMILAR: f64 = 0.7;
    strsim::jaro(written, key) > SIMILAR
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
    fn removes_keys_at_serde_paths_or_below() {
        let mut value: Value =
            serde_yaml::from_str("a: 1\nservers:\n  - { address: x, wieght: 2 }\nt: { c: 1 }\n")
                .unwrap();
        assert_eq!(
            remove_key(&mut value, "servers[0]", "wieght").as_deref(),
            Some("servers[0]")
        );
        assert_eq!(remove_key(&mut value, "", "a").as_deref(), Some(""));
        assert_eq!(
            remove_key(&mut value, "nowhere", "c").as_deref(),
            Some(FOUND_BY_SEARCH)
        );
        assert_eq!(remove_key(&mut value, "", "nothing"), None);
        let left: Value = serde_yaml::from_str("servers: [ { address: x } ]\nt: {}\n").unwrap();
        assert_eq!(value, left);
    }

    #[test]
    fn misspellings_look_like_their_key() {
        assert_eq!(missing_field("missing field `upstream`"), Some("upstream"));
        assert_eq!(missing_field("unknown field `x`"), None);
        for (written, key) in [
            ("upstrem", "upstream"),
            ("nmae", "name"),
            ("adress", "address"),
        ] {
            assert!(looks_like(written, key), "{written} {key}");
        }
        for (written, key) in [("colour", "name"), ("typo", "upstream"), ("db", "url")] {
            assert!(!looks_like(written, key), "{written} {key}");
        }
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
