//! A route's compiled header rules and value templates: names and literal values made into
//! `HeaderName`/`HeaderValue` once, when the snapshot is compiled; placeholders filled per
//! request from [`TemplateVars`]. Rules apply as remove, then set, then add. Pure.

use std::fmt::Write;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::model::{HeaderRules, Template, TemplatePart};

/// What placeholders stand for in one request.
#[derive(Debug, Clone, Copy)]
pub struct TemplateVars<'a> {
    /// The request's host without port.
    pub host: &'a str,
    /// Path and query as received.
    pub path: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    pub client_ip: Option<IpAddr>,
    pub request_id: &'a str,
}

/// A compiled template: a ready value when it has no placeholder.
#[derive(Debug, Clone)]
pub enum CompiledTemplate {
    Static(HeaderValue),
    Dynamic(Vec<TemplatePart>),
}

impl CompiledTemplate {
    pub fn compile(template: &Template) -> Self {
        match template.literal().map(HeaderValue::from_str) {
            Some(Ok(value)) => Self::Static(value),
            _ => Self::Dynamic(template.parts.clone()),
        }
    }

    /// The value for one request; `None` when what the placeholders hold cannot be a header
    /// value (the rule is then skipped).
    pub fn render(&self, vars: &TemplateVars<'_>) -> Option<HeaderValue> {
        let parts = match self {
            Self::Static(value) => return Some(value.clone()),
            Self::Dynamic(parts) => parts,
        };
        let mut text = String::with_capacity(64);
        for part in parts {
            match part {
                TemplatePart::Literal(literal) => text.push_str(literal),
                TemplatePart::Host => text.push_str(vars.host),
                TemplatePart::Path => text.push_str(vars.path),
                TemplatePart::Scheme => text.push_str(vars.scheme),
                TemplatePart::ClientIp => {
                    if let Some(ip) = vars.client_ip {
                        let _ = write!(text, "{}", ip.to_canonical());
                    }
                }
                TemplatePart::RequestId => text.push_str(vars.request_id),
            }
        }
        HeaderValue::try_from(text).ok()
    }
}

/// A compiled `headers.request` or `headers.response`.
#[derive(Debug, Clone)]
pub struct HeaderRuleSet {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, CompiledTemplate)>,
    add: Vec<(HeaderName, CompiledTemplate)>,
}

impl HeaderRuleSet {
    /// `None` for rules that change nothing.
    pub fn compile(rules: &HeaderRules) -> Option<Self> {
        if rules.is_empty() {
            return None;
        }
        let compile = |list: &[(HeaderName, Template)]| {
            list.iter()
                .map(|(name, template)| (name.clone(), CompiledTemplate::compile(template)))
                .collect()
        };
        Some(Self {
            remove: rules.remove.clone(),
            set: compile(&rules.set),
            add: compile(&rules.add),
        })
    }

    /// Applies the rules to `headers`: removes, then sets (replacing every value), then adds.
    pub fn apply(&self, headers: &mut HeaderMap, vars: &TemplateVars<'_>) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, template) in &self.set {
            match template.render(vars) {
                Some(value) => {
                    headers.insert(name.clone(), value);
                }
                None => {
                    headers.remove(name);
                }
            }
        }
        for (name, template) in &self.add {
            if let Some(value) = template.render(vars) {
                headers.append(name.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(parts: Vec<TemplatePart>) -> Template {
        Template { parts }
    }

    fn lit(text: &str) -> TemplatePart {
        TemplatePart::Literal(text.into())
    }

    fn name(text: &str) -> HeaderName {
        HeaderName::from_bytes(text.as_bytes()).unwrap()
    }

    const VARS: TemplateVars<'static> = TemplateVars {
        host: "api.example.com",
        path: "/v1/models?x=1",
        scheme: "https",
        client_ip: None,
        request_id: "req-42",
    };

    #[test]
    fn templates_render_their_placeholders() {
        let full = CompiledTemplate::compile(&template(vec![
            TemplatePart::Scheme,
            lit("://"),
            TemplatePart::Host,
            TemplatePart::Path,
            lit(" "),
            TemplatePart::RequestId,
            lit(" "),
            TemplatePart::ClientIp,
        ]));
        let vars = TemplateVars {
            client_ip: Some("::ffff:192.0.2.7".parse().unwrap()),
            ..VARS
        };
        assert_eq!(
            full.render(&vars).unwrap(),
            "https://api.example.com/v1/models?x=1 req-42 192.0.2.7"
        );
        let fixed = CompiledTemplate::compile(&template(vec![lit("no-store")]));
        assert!(matches!(fixed, CompiledTemplate::Static(_)));
        assert_eq!(fixed.render(&VARS).unwrap(), "no-store");
        let bad_host = TemplateVars {
            host: "a\nb",
            ..VARS
        };
        let host_only = CompiledTemplate::compile(&template(vec![TemplatePart::Host]));
        assert_eq!(host_only.render(&bad_host), None);
    }

    #[test]
    fn rules_remove_then_set_then_add() {
        let rules = HeaderRuleSet::compile(&HeaderRules {
            remove: vec![name("x-internal"), name("x-env")],
            set: vec![
                (name("x-env"), template(vec![lit("prod")])),
                (name("cache-control"), template(vec![lit("no-store")])),
            ],
            add: vec![
                (name("x-trace"), template(vec![TemplatePart::RequestId])),
                (name("x-env"), template(vec![lit("extra")])),
            ],
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.append("x-internal", "secret".parse().unwrap());
        headers.append("x-env", "dev".parse().unwrap());
        headers.append("cache-control", "max-age=60".parse().unwrap());
        headers.append("cache-control", "public".parse().unwrap());
        headers.append("x-trace", "upstream".parse().unwrap());
        rules.apply(&mut headers, &VARS);
        assert!(!headers.contains_key("x-internal"));
        let all = |n: &str| -> Vec<&str> {
            headers
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(all("x-env"), ["prod", "extra"]);
        assert_eq!(all("cache-control"), ["no-store"]);
        assert_eq!(all("x-trace"), ["upstream", "req-42"]);
        assert!(HeaderRuleSet::compile(&HeaderRules::default()).is_none());
    }
}
