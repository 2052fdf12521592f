//! `routes[].headers.request` and `.response`: header names (hop-by-hop ones refused: the
//! connection's framing is ferrogate's) and value templates.

use serde_yaml::Value;

use super::templates::parse_header_template;
use super::Checker;
use crate::config::model::{HeaderRules, Template};
use crate::config::raw::RawHeaderRules;
use crate::config::spans::{child_index, child_key};

/// Headers that describe one connection, not the message: never named by header rules.
pub(super) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

impl Checker {
    /// The header rules at `path` (errors reported; what is valid is kept).
    pub(super) fn header_rules(&mut self, path: &str, raw: &RawHeaderRules) -> HeaderRules {
        let mut rules = HeaderRules::default();
        for (index, name) in raw.remove.iter().flatten().enumerate() {
            let at = child_index(&child_key(path, "remove"), index);
            if let Some(name) = self.rule_header_name(&at, name, false) {
                rules.remove.push(name);
            }
        }
        for (key, mapping, slot) in [
            ("set", &raw.set, &mut rules.set),
            ("add", &raw.add, &mut rules.add),
        ] {
            let Some(mapping) = mapping else {
                continue;
            };
            let list_path = child_key(path, key);
            for (name, value) in mapping {
                let Some(name_text) = name.as_str() else {
                    self.at_value(&list_path, "header names must be strings");
                    continue;
                };
                let at = child_key(&list_path, name_text);
                let name = self.rule_header_name(&at, name_text, true);
                let value = self.header_value(&at, value);
                if let (Some(name), Some(value)) = (name, value) {
                    slot.push((name, value));
                }
            }
        }
        rules
    }

    /// A header name a rule may name, lower-cased; the error goes to its key (`at_key`) or its
    /// list element.
    fn rule_header_name(
        &mut self,
        path: &str,
        name: &str,
        is_key: bool,
    ) -> Option<http::HeaderName> {
        let problem = match http::HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => format!("`{name}` is not a valid header name"),
            Ok(header) if HOP_BY_HOP.contains(&header.as_str()) => format!(
                "`{name}` is a hop-by-hop header: it belongs to one connection and ferrogate sets it itself"
            ),
            Ok(header) => return Some(header),
        };
        if is_key {
            self.at_key(path, problem);
        } else {
            self.at_value(path, problem);
        }
        None
    }

    /// A header value template: a string (numbers and booleans taken as their text).
    fn header_value(&mut self, path: &str, value: &Value) -> Option<Template> {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            _ => {
                self.at_value(path, "a header value must be a string");
                return None;
            }
        };
        parse_header_template(&text)
            .map_err(|message| self.at_value(path, message))
            .ok()
    }
}
