//! A route's action (exactly one of `upstream`, `redirect`, `respond`) and its rules: `match`
//! (in [`super::matching`]), `deny_user_agents`, `countries`, `rewrite` and `headers` (in
//! [`super::header_rules`]).

use serde_yaml::Value;

use super::countries::is_assigned;
use super::decode::looks_like;
use super::matching::{invalid_regex, MatchContext};
use super::templates::parse_header_template;
use super::Checker;
use crate::config::model::{
    Countries, CountryCode, FixedResponse, PathPattern, Pattern, Redirect, Rewrite, RouteAction,
    RouteRules, TemplatePart, DEFAULT_REDIRECT_STATUS, DEFAULT_RESPOND_CONTENT_TYPE,
    DEFAULT_RESPOND_STATUS,
};
use crate::config::raw::{RawCountries, RawRedirect, RawRespond, RawRewrite, RawRoute, ROUTE_KEYS};
use crate::config::spans::{child_index, child_key};

/// The keys naming a route's action.
const ACTION_KEYS: [&str; 3] = ["upstream", "redirect", "respond"];
/// Statuses a `redirect` may answer with.
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// What a route's rules may rely on besides the route itself.
pub(super) struct RuleContext<'a> {
    pub listener: &'a str,
    /// The route's listener asks for client certificates.
    pub client_auth: bool,
    /// The top-level `geoip` is given.
    pub geoip: bool,
}

impl Checker {
    /// The action of the route at `path` (`element`: the route as written, to tell a misspelt
    /// action key); `None` when there is none or more than one (reported).
    pub(super) fn route_action(
        &mut self,
        path: &str,
        raw: &RawRoute,
        element: &Value,
    ) -> Option<RouteAction> {
        let given: Vec<&str> = ACTION_KEYS
            .iter()
            .zip([
                raw.upstream.is_some(),
                raw.redirect.is_some(),
                raw.respond.is_some(),
            ])
            .filter(|(_, given)| *given)
            .map(|(key, _)| *key)
            .collect();
        match given.as_slice() {
            [] => {
                if !misspells_an_action(element) {
                    self.at_key(
                        path,
                        "missing field `upstream`: a route needs exactly one of `upstream`, `redirect` or `respond`",
                    );
                }
                None
            }
            [_] => {
                if let Some(name) = &raw.upstream {
                    return Some(RouteAction::Upstream(name.clone()));
                }
                if let Some(redirect) = &raw.redirect {
                    return self.redirect(&child_key(path, "redirect"), redirect);
                }
                raw.respond
                    .as_ref()
                    .and_then(|respond| self.respond(&child_key(path, "respond"), respond))
            }
            [first, rest @ ..] => {
                for key in rest {
                    let message = format!(
                        "`{key}` and `{first}` both given: a route has exactly one of `upstream`, `redirect` or `respond`"
                    );
                    self.at_key(&child_key(path, key), message);
                }
                None
            }
        }
    }

    fn redirect(&mut self, path: &str, raw: &RawRedirect) -> Option<RouteAction> {
        let errors_before = self.error_count();
        let to_path = child_key(path, "to");
        let to = parse_header_template(&raw.to)
            .map_err(|message| self.at_value(&to_path, message))
            .ok();
        if let Some(to) = &to {
            let starts_well = match to.parts.first() {
                Some(TemplatePart::Literal(text)) => {
                    text.starts_with('/')
                        || text.starts_with("http://")
                        || text.starts_with("https://")
                }
                Some(_) => true,
                None => false,
            };
            if !starts_well {
                self.at_value(
                    &to_path,
                    "a redirect target starts with `/`, `http://`, `https://` or a placeholder",
                );
            }
        }
        let status = raw.status.unwrap_or(DEFAULT_REDIRECT_STATUS);
        if !REDIRECT_STATUSES.contains(&status) {
            self.at_value(
                &child_key(path, "status"),
                format!("a redirect status is 301, 302, 303, 307 or 308, got {status}"),
            );
        }
        let to = to?;
        (self.error_count() == errors_before)
            .then_some(RouteAction::Redirect(Redirect { to, status }))
    }

    fn respond(&mut self, path: &str, raw: &RawRespond) -> Option<RouteAction> {
        let errors_before = self.error_count();
        let status = raw.status.unwrap_or(DEFAULT_RESPOND_STATUS);
        if !(200..=599).contains(&status) {
            self.at_value(
                &child_key(path, "status"),
                format!("a response status is between 200 and 599, got {status}"),
            );
        }
        let body = raw.body.clone().unwrap_or_default();
        if !body.is_empty() && matches!(status, 204 | 304) {
            self.at_value(
                &child_key(path, "body"),
                format!("a {status} response has no body"),
            );
        }
        let content_type = match &raw.content_type {
            Some(text) => {
                if http::HeaderValue::from_str(text).is_err() {
                    self.at_value(&child_key(path, "content_type"), "not a valid header value");
                }
                Some(text.clone())
            }
            None if body.is_empty() => None,
            None => Some(DEFAULT_RESPOND_CONTENT_TYPE.to_string()),
        };
        (self.error_count() == errors_before).then_some(RouteAction::Respond(FixedResponse {
            status,
            body,
            content_type,
        }))
    }

    /// The rules of the route at `path` whose action is `action` (when it decoded).
    pub(super) fn route_rules(
        &mut self,
        path: &str,
        raw: &RawRoute,
        action: Option<&RouteAction>,
        context: RuleContext<'_>,
    ) -> RouteRules {
        let mut rules = RouteRules::default();
        if let Some(matcher) = &raw.matcher {
            let match_context = MatchContext {
                listener: context.listener,
                client_auth: context.client_auth,
            };
            rules.matcher = self.route_match(&child_key(path, "match"), matcher, match_context);
        }
        if let Some(agents) = &raw.deny_user_agents {
            rules.deny_user_agents = self.user_agent_patterns(path, agents);
        }
        if let Some(countries) = &raw.countries {
            let countries_path = child_key(path, "countries");
            rules.countries = self.countries(&countries_path, countries);
            if !context.geoip {
                self.at_key(
                    &countries_path,
                    "`countries` needs the country database: add `geoip: { database: FILE }` at the top level",
                );
            }
        }
        let answers_itself = matches!(
            action,
            Some(RouteAction::Redirect(_) | RouteAction::Respond(_))
        );
        if let Some(rewrite) = &raw.rewrite {
            let rewrite_path = child_key(path, "rewrite");
            if raw.strip_prefix {
                self.at_key(
                    &rewrite_path,
                    "`strip_prefix: true` is `rewrite: { prefix: / }`; use one of them",
                );
            } else if answers_itself {
                self.at_key(
                    &rewrite_path,
                    "a route that answers itself has no upstream to rewrite the path for",
                );
            } else {
                rules.rewrite = self.rewrite(&rewrite_path, rewrite);
            }
        } else if raw.strip_prefix {
            if answers_itself {
                self.at_key(
                    &child_key(path, "strip_prefix"),
                    "a route that answers itself has no upstream to strip the prefix for",
                );
            }
            rules.rewrite = Some(Rewrite::Prefix("/".into()));
        }
        if let Some(headers) = &raw.headers {
            let headers_path = child_key(path, "headers");
            if let Some(request) = &headers.request {
                let request_path = child_key(&headers_path, "request");
                if answers_itself {
                    self.at_key(
                        &request_path,
                        "a route that answers itself sends no request upstream; use `headers.response`",
                    );
                }
                rules.request_headers = self.header_rules(&request_path, request);
            }
            if let Some(response) = &headers.response {
                rules.response_headers =
                    self.header_rules(&child_key(&headers_path, "response"), response);
            }
        }
        rules
    }

    fn user_agent_patterns(&mut self, path: &str, sources: &[String]) -> Vec<Pattern> {
        let list_path = child_key(path, "deny_user_agents");
        if sources.is_empty() {
            self.at_value(
                &list_path,
                "an empty list has no effect; name regexes or remove the key",
            );
        }
        let mut patterns = Vec::with_capacity(sources.len());
        for (index, source) in sources.iter().enumerate() {
            match Pattern::new(source) {
                Ok(pattern) => patterns.push(pattern),
                Err(error) => self.at_value(&child_index(&list_path, index), invalid_regex(&error)),
            }
        }
        patterns
    }

    fn countries(&mut self, path: &str, raw: &RawCountries) -> Option<Countries> {
        let (key, codes) = match (&raw.allow, &raw.deny) {
            (Some(codes), None) => ("allow", codes),
            (None, Some(codes)) => ("deny", codes),
            _ => {
                self.at_value(path, "give exactly one of `allow` and `deny`");
                return None;
            }
        };
        let list_path = child_key(path, key);
        if codes.is_empty() {
            self.at_value(
                &list_path,
                "name at least one country code (ISO 3166-1 alpha-2)",
            );
            return None;
        }
        let errors_before = self.error_count();
        let mut parsed = Vec::with_capacity(codes.len());
        for (index, text) in codes.iter().enumerate() {
            match CountryCode::parse(text).filter(|code| is_assigned(code.as_str())) {
                Some(code) => parsed.push(code),
                None => self.at_value(
                    &child_index(&list_path, index),
                    format!(
                        "`{text}` is not an ISO 3166-1 alpha-2 country code (such as DE, FR, US)"
                    ),
                ),
            }
        }
        if self.error_count() != errors_before {
            return None;
        }
        Some(match key {
            "allow" => Countries::Allow(parsed),
            _ => Countries::Deny(parsed),
        })
    }

    fn rewrite(&mut self, path: &str, raw: &RawRewrite) -> Option<Rewrite> {
        match (&raw.prefix, &raw.regex, &raw.to) {
            (Some(prefix), None, None) => {
                if prefix.starts_with('/') {
                    Some(Rewrite::Prefix(prefix.clone()))
                } else {
                    self.at_value(
                        &child_key(path, "prefix"),
                        format!("the new prefix `{prefix}` must start with `/`"),
                    );
                    None
                }
            }
            (None, Some(source), Some(to)) => {
                let pattern = match PathPattern::new(source) {
                    Ok(pattern) => pattern,
                    Err(error) => {
                        self.at_value(&child_key(path, "regex"), invalid_regex(&error));
                        return None;
                    }
                };
                if let Err(message) = check_replacement(&pattern, to) {
                    self.at_value(&child_key(path, "to"), message);
                    return None;
                }
                Some(Rewrite::Regex {
                    pattern,
                    to: to.clone(),
                })
            }
            (None, Some(_), None) => {
                self.at_key(
                    &child_key(path, "regex"),
                    "`regex` needs `to`, the new path",
                );
                None
            }
            (None, None, Some(_)) => {
                self.at_key(&child_key(path, "to"), "`to` needs `regex`");
                None
            }
            _ => {
                self.at_value(path, "give either `prefix`, or `regex` with `to`");
                None
            }
        }
    }
}

/// Whether the route as written has a key that looks like a misspelt action key (its own error
/// already says so).
fn misspells_an_action(element: &Value) -> bool {
    let Value::Mapping(mapping) = element else {
        return false;
    };
    mapping
        .keys()
        .filter_map(Value::as_str)
        .filter(|key| !ROUTE_KEYS.contains(key))
        .any(|key| ACTION_KEYS.iter().any(|action| looks_like(key, action)))
}

/// Checks a rewrite's replacement: it makes a path (starts with `/` or a group), and every
/// `$N`, `$name`, `${N}`, `${name}` names a group of `pattern` (regex reads `$1a` as the group
/// `1a`: write `${1}a`).
fn check_replacement(pattern: &PathPattern, to: &str) -> Result<(), String> {
    if !(to.starts_with('/') || to.starts_with('$')) {
        return Err(format!(
            "the new path `{to}` must start with `/` (or a group such as `$1`)"
        ));
    }
    let regex = pattern.regex();
    let groups = regex.captures_len();
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let mut rest = to;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
            continue;
        }
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => return Err("a `${` without its `}`".into()),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let known = match name.parse::<usize>() {
            Ok(number) => number < groups,
            Err(_) => names.contains(&name),
        };
        if name.is_empty() || !known {
            return Err(format!(
                "`${name}` names no group of the regex (it has {} numbered group(s){}); write `${{1}}x` to put text right after a group, `$$` for a literal `$`",
                groups - 1,
                if names.is_empty() { String::new() } else { format!(" and {}", names.join(", ")) }
            ));
        }
        rest = tail;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_keys_are_every_key_of_a_route() {
        let error = serde_yaml::from_str::<RawRoute>("{ name: a, zzz: 1 }").unwrap_err();
        let listed: Vec<String> = ROUTE_KEYS.iter().map(|k| format!("`{k}`")).collect();
        assert!(error.to_string().contains(&listed.join(", ")), "{error}");
    }

    #[test]
    fn replacements_name_existing_groups() {
        let pattern = PathPattern::new("^/old/(?P<rest>.*)$").unwrap();
        assert!(check_replacement(&pattern, "/new/$1").is_ok());
        assert!(check_replacement(&pattern, "/new/${rest}?x=$$").is_ok());
        assert!(check_replacement(&pattern, "$1").is_ok());
        assert!(check_replacement(&pattern, "/new/$2")
            .unwrap_err()
            .contains("`$2`"));
        assert!(check_replacement(&pattern, "/new/$1a")
            .unwrap_err()
            .contains("`$1a`"));
        assert!(check_replacement(&pattern, "new/$1")
            .unwrap_err()
            .contains("start with `/`"));
        assert!(check_replacement(&pattern, "/${1").is_err());
    }
}
