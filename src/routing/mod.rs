//! Host and path routing table: exact host > `*.wildcard` host > any host, then the longest
//! matching path prefix on a segment boundary, then file order among equal prefixes. Several
//! rules may share host and prefix: [`Router::find_with`] skips those a predicate turns down
//! (a route's `match`). Pure data in, data out; no I/O. The compiled request rules of a route
//! live beside it: [`conditions`] (`match`), [`rewrite`], [`headers`] and [`answer`].

pub mod answer;
pub mod conditions;
pub mod headers;
pub mod rewrite;

// Keys come from the configuration (trusted), so a fast non-keyed hash is safe for lookups.
use rustc_hash::FxHashMap as HashMap;

use crate::config::model::HostMatch;

/// One compiled rule inside a host group.
#[derive(Debug, Clone)]
pub struct Rule<T> {
    /// Starts with `/`.
    pub path_prefix: String,
    pub target: T,
}

/// A routing table over targets of type `T`.
#[derive(Debug, Clone)]
pub struct Router<T> {
    exact: HashMap<String, Vec<Rule<T>>>,
    /// Keyed by the suffix after `*.`; matches names with exactly one more label.
    wildcard: HashMap<String, Vec<Rule<T>>>,
    any_host: Vec<Rule<T>>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::default(),
            wildcard: HashMap::default(),
            any_host: Vec::new(),
        }
    }
}

impl<T: Clone> Router<T> {
    /// Adds a rule for each host (or for any host when `hosts` is empty).
    pub fn insert(&mut self, hosts: &[HostMatch], path_prefix: &str, target: T) {
        let rule = Rule {
            path_prefix: path_prefix.to_string(),
            target,
        };
        if hosts.is_empty() {
            insert_sorted(&mut self.any_host, rule);
            return;
        }
        for host in hosts {
            let group = match host {
                HostMatch::Exact(name) => self.exact.entry(name.clone()).or_default(),
                HostMatch::Wildcard(suffix) => self.wildcard.entry(suffix.clone()).or_default(),
            };
            insert_sorted(group, rule.clone());
        }
    }
}

impl<T> Router<T> {
    /// Finds the rule for a normalized host (see [`normalize_host`]) and a request path.
    ///
    /// Host groups are tried from the most specific (exact, then wildcard, then any host); the
    /// first group holding a matching path prefix wins, and inside it the longest prefix wins.
    pub fn find(&self, host: &str, path: &str) -> Option<&Rule<T>> {
        self.find_with(host, path, |_| true)
    }

    /// [`Router::find`] for targets that may turn a request down: the first rule, in the same
    /// order, whose prefix fits `path` and whose target `accept`s the request. A rule turned
    /// down is skipped as if it were not there (the next rule of its group, then the next
    /// group).
    pub fn find_with(
        &self,
        host: &str,
        path: &str,
        mut accept: impl FnMut(&T) -> bool,
    ) -> Option<&Rule<T>> {
        let exact = self
            .exact
            .get(host)
            .and_then(|g| first_fit(g, path, &mut accept));
        if exact.is_some() {
            return exact;
        }
        let wildcard = host
            .split_once('.')
            .and_then(|(_, suffix)| self.wildcard.get(suffix))
            .and_then(|g| first_fit(g, path, &mut accept));
        if wildcard.is_some() {
            return wildcard;
        }
        first_fit(&self.any_host, path, &mut accept)
    }

    /// True when no rule was added.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any_host.is_empty()
    }
}

fn insert_sorted<T>(group: &mut Vec<Rule<T>>, rule: Rule<T>) {
    // Longest prefix first; a stable position keeps file order among equal lengths.
    let at = group.partition_point(|r| r.path_prefix.len() >= rule.path_prefix.len());
    group.insert(at, rule);
}

/// The first rule of a group (longest prefix first, then file order) that fits `path` and that
/// `accept` takes.
fn first_fit<'a, T>(
    group: &'a [Rule<T>],
    path: &str,
    accept: &mut impl FnMut(&T) -> bool,
) -> Option<&'a Rule<T>> {
    group
        .iter()
        .find(|r| prefix_matches(&r.path_prefix, path) && accept(&r.target))
}

/// Whether `prefix` matches `path` on a segment boundary: `/v1` matches `/v1` and `/v1/x` but not
/// `/v1x`; a prefix ending in `/` matches anything below it.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}

/// Removes a matched prefix from a path, keeping a leading `/`: `/owui/` on `/owui/a` gives `/a`,
/// `/api` on `/api` gives `/`.
pub fn strip_path_prefix<'a>(prefix: &str, path: &'a str) -> std::borrow::Cow<'a, str> {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.get(prefix.len()..).unwrap_or("");
    if rest.starts_with('/') {
        std::borrow::Cow::Borrowed(rest)
    } else {
        std::borrow::Cow::Owned(format!("/{rest}"))
    }
}

/// Lowercases a Host header value or URI authority and removes its port and any trailing dot.
/// Returns `None` for an empty or syntactically impossible host. Borrows from `raw` unless it
/// has uppercase letters (the common host needs no copy).
pub fn normalize_host(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets, drop the port.
        let end = rest.find(']')?;
        &raw[..end + 2]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(h: &str) -> HostMatch {
        HostMatch::Exact(h.into())
    }
    fn wild(h: &str) -> HostMatch {
        HostMatch::Wildcard(h.into())
    }

    fn router() -> Router<&'static str> {
        let mut r = Router::default();
        r.insert(&[exact("chat.example.com")], "/", "chat");
        r.insert(&[exact("example.com")], "/owui/", "owui");
        r.insert(&[exact("example.com")], "/owui/api", "owui-api");
        r.insert(&[wild("example.com")], "/", "wild");
        r.insert(&[], "/v1", "any-v1");
        r.insert(&[], "/", "fallback");
        r
    }

    fn find<'a>(r: &'a Router<&'static str>, host: &str, path: &str) -> Option<&'a str> {
        r.find(host, path).map(|rule| rule.target)
    }

    #[test]
    fn exact_host_wins_over_wildcard() {
        let r = router();
        assert_eq!(find(&r, "chat.example.com", "/x"), Some("chat"));
        assert_eq!(find(&r, "other.example.com", "/x"), Some("wild"));
    }

    #[test]
    fn wildcard_matches_one_label_only() {
        let r = router();
        assert_eq!(find(&r, "a.b.example.com", "/x"), Some("fallback"));
        assert_eq!(find(&r, "example.com", "/x"), Some("fallback"));
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router();
        assert_eq!(find(&r, "example.com", "/owui/api/chats"), Some("owui-api"));
        assert_eq!(find(&r, "example.com", "/owui/index.html"), Some("owui"));
    }

    #[test]
    fn falls_through_to_less_specific_host_group() {
        let r = router();
        assert_eq!(find(&r, "example.com", "/v1/models"), Some("any-v1"));
    }

    #[test]
    fn prefix_respects_segment_boundary() {
        assert!(prefix_matches("/v1", "/v1"));
        assert!(prefix_matches("/v1", "/v1/models"));
        assert!(!prefix_matches("/v1", "/v1x"));
        assert!(prefix_matches("/owui/", "/owui/a"));
        assert!(!prefix_matches("/owui/", "/owui"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn a_turned_down_rule_gives_way_to_the_next_in_order() {
        let mut r: Router<(&str, bool)> = Router::default();
        // Same host and prefix: file order decides among those that accept.
        r.insert(&[exact("api.test")], "/admin/", ("admin-prod", false));
        r.insert(&[exact("api.test")], "/admin/", ("admin-any", true));
        r.insert(&[exact("api.test")], "/", ("api-root", false));
        r.insert(&[wild("test")], "/admin/", ("wild-admin", true));
        r.insert(&[], "/", ("fallback", true));
        let found = |path: &str, accept: &dyn Fn(&str) -> bool| {
            r.find_with("api.test", path, |(name, _)| accept(name))
                .map(|rule| rule.target.0)
        };
        assert_eq!(found("/admin/x", &|_| true), Some("admin-prod"));
        assert_eq!(found("/admin/x", &|n| n != "admin-prod"), Some("admin-any"));
        // Every rule of the exact group turned down: the wildcard group, then any host.
        assert_eq!(
            found("/admin/x", &|n| n.starts_with("wild") || n == "fallback"),
            Some("wild-admin")
        );
        assert_eq!(found("/other", &|n| n == "fallback"), Some("fallback"));
        assert_eq!(found("/other", &|_| false), None);
        // `find` takes the first in order, as before.
        assert_eq!(
            r.find("api.test", "/admin/").map(|rule| rule.target.0),
            Some("admin-prod")
        );
    }

    #[test]
    fn any_host_only_table_and_miss() {
        let mut r: Router<u8> = Router::default();
        assert!(r.is_empty());
        r.insert(&[exact("a.test")], "/api", 1);
        assert!(r.find("a.test", "/other").is_none());
        assert!(r.find("b.test", "/api").is_none());
    }

    #[test]
    fn strip_prefix_keeps_leading_slash() {
        assert_eq!(strip_path_prefix("/owui/", "/owui/a/b"), "/a/b");
        assert_eq!(strip_path_prefix("/owui/", "/owui/"), "/");
        assert_eq!(strip_path_prefix("/api", "/api"), "/");
        assert_eq!(strip_path_prefix("/api", "/api/x"), "/x");
    }

    #[test]
    fn host_normalization() {
        assert_eq!(
            normalize_host("Chat.Example.COM:8443").as_deref(),
            Some("chat.example.com")
        );
        assert_eq!(
            normalize_host("example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize_host("[::1]:443").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("a:b:c"), None);
        assert_eq!(normalize_host("[::1"), None);
    }
}
