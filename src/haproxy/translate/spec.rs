//! One alternative of a HAProxy condition as what a ferrogate route can say: hosts, a path
//! prefix, `match` conditions and whether the connection is TLS; the intersection of two such
//! specs (a rule that applies within another route's scope), and which listeners a spec lands
//! on. A test a route cannot express is an error naming it.

use super::super::acl::{Atom, Fetch, Matching, Test};
use super::super::values::regex_escape;
use super::super::yaml::{Cond, MatchOut};

/// What a route matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// Exact names and `*.` wildcards; empty = any host.
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    pub matching: MatchOut,
    /// `Some(true)`: only on TLS listeners (`ssl_fc`), `Some(false)`: only plain ones.
    pub tls: Option<bool>,
    /// Where the translation is close but not exact (said in a comment and a note).
    pub approximations: Vec<String>,
}

/// Header names ferrogate routes on through `hosts`.
const HOST: &str = "host";

fn insensitive(pattern: String, test: &Test) -> String {
    if test.case_insensitive {
        format!("(?i){pattern}")
    } else {
        pattern
    }
}

/// A header or query condition for a positive test of one value.
fn value_cond(test: &Test) -> Result<Cond, String> {
    let value = test.values.first().cloned().unwrap_or_default();
    Ok(match test.matching {
        Matching::Found => Cond::Present,
        Matching::Exact if !test.case_insensitive => Cond::Equals(value),
        Matching::Prefix if !test.case_insensitive => Cond::Prefix(value),
        Matching::Exact => Cond::Regex(insensitive(format!("^{}$", regex_escape(&value)), test)),
        Matching::Prefix => Cond::Regex(insensitive(format!("^{}", regex_escape(&value)), test)),
        Matching::Suffix => Cond::Regex(insensitive(format!("{}$", regex_escape(&value)), test)),
        Matching::Substring => Cond::Regex(insensitive(regex_escape(&value), test)),
        Matching::Regex => Cond::Regex(insensitive(value, test)),
        Matching::Ip | Matching::Bool => {
            return Err(format!("`{}` is not translated", test.describe()))
        }
    })
}

impl Spec {
    fn add_header(&mut self, name: &str, cond: Cond) -> Result<(), String> {
        if self.matching.headers.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "two conditions on the header {name} in one rule are not translated"
            ));
        }
        self.matching.headers.push((name.to_string(), cond));
        Ok(())
    }

    fn add_atom(&mut self, atom: &Atom) -> Result<(), String> {
        let test = &atom.test;
        let described = test.describe();
        let negated = atom.negated;
        match (&test.fetch, test.matching) {
            (Fetch::Always(value), _) => {
                if *value == negated {
                    return Err(format!("`{}{described}` is never true", not(negated)));
                }
            }
            (Fetch::SslFc, _) => {
                let tls = !negated;
                if self.tls.is_some_and(|t| t != tls) {
                    return Err("`ssl_fc` and `!ssl_fc` together are never true".into());
                }
                self.tls = Some(tls);
            }
            (Fetch::Host, Matching::Exact | Matching::Suffix) if !negated => {
                if !self.hosts.is_empty() {
                    return Err("two host tests in one rule are not translated".into());
                }
                for value in &test.values {
                    let value = value.to_ascii_lowercase();
                    let value = value.split(':').next().unwrap_or_default().to_string();
                    if test.matching == Matching::Exact {
                        self.hosts.push(value);
                        continue;
                    }
                    match value.strip_prefix('.') {
                        Some(domain) => {
                            self.hosts.push(format!("*.{domain}"));
                            self.approximations.push(format!(
                                "`hdr_end(host) {value}` matches names any number of labels deep; `*.{domain}` matches one label"
                            ));
                        }
                        None => {
                            self.hosts.push(value.clone());
                            self.hosts.push(format!("*.{value}"));
                            self.approximations.push(format!(
                                "`hdr_end(host) {value}` also matches names such as x{value}; translated as {value} and *.{value}"
                            ));
                        }
                    }
                }
            }
            (Fetch::Host, _) if !negated => {
                self.add_header(HOST, value_cond(test)?)?;
                if test.matching == Matching::Regex {
                    self.approximations.push(format!(
                        "`{described}`: HAProxy's regex (PCRE) is read as a Rust regex"
                    ));
                }
            }
            (Fetch::Path, Matching::Prefix | Matching::Exact) if !negated => {
                if self.path_prefix.is_some() {
                    return Err("two path tests in one rule are not translated".into());
                }
                let value = test.values.first().cloned().unwrap_or_default();
                if !value.starts_with('/') {
                    return Err(format!("`{described}`: a path prefix must start with /"));
                }
                if test.case_insensitive {
                    self.approximations
                        .push(format!("`{described}`: paths are matched case-sensitively"));
                }
                if test.matching == Matching::Exact {
                    self.approximations.push(format!(
                        "`path {value}` matches that path alone; path_prefix {value} also matches below it"
                    ));
                } else if !value.ends_with('/') {
                    self.approximations.push(format!(
                        "`path_beg {value}` also matched {value}x; path_prefix matches whole segments ({value} and {value}/…)"
                    ));
                }
                self.path_prefix = Some(value);
            }
            (Fetch::Src, _) if !negated => {
                if !self.matching.client.is_empty() {
                    return Err("two src tests in one rule are not translated".into());
                }
                self.matching.client = test.values.clone();
            }
            (Fetch::Method, _) if !negated => {
                if !self.matching.methods.is_empty() {
                    return Err("two method tests in one rule are not translated".into());
                }
                self.matching.methods =
                    test.values.iter().map(|m| m.to_ascii_uppercase()).collect();
            }
            (Fetch::Header(name), Matching::Found) => {
                let cond = if negated { Cond::Absent } else { Cond::Present };
                self.add_header(name, cond)?;
            }
            (Fetch::Header(name), _) if !negated => {
                self.add_header(name, value_cond(test)?)?;
                if test.matching == Matching::Regex {
                    self.approximations.push(format!(
                        "`{described}`: HAProxy's regex (PCRE) is read as a Rust regex"
                    ));
                }
            }
            (Fetch::Query(name), _) => {
                let cond = match (test.matching, negated) {
                    (Matching::Found, false) => Cond::Present,
                    (Matching::Found, true) => Cond::Absent,
                    (_, false) => value_cond(test)?,
                    (_, true) => {
                        return Err(format!(
                        "`!{described}` is not translated: a route's match cannot negate a value"
                    ))
                    }
                };
                if self.matching.query.iter().any(|(n, _)| n == name) {
                    return Err(format!(
                        "two conditions on the parameter {name} are not translated"
                    ));
                }
                self.matching.query.push((name.clone(), cond));
            }
            _ => {
                return Err(format!(
                    "`{}{described}` is not translated: a route's match cannot express it",
                    not(negated)
                ))
            }
        }
        Ok(())
    }

    /// The spec for atoms that must all hold.
    pub fn from_atoms(atoms: &[Atom]) -> Result<Self, String> {
        let mut spec = Spec::default();
        for atom in atoms {
            spec.add_atom(atom)?;
        }
        Ok(spec)
    }

    /// Whether the route needs a `match` (or is told apart only by hosts and prefix).
    pub fn has_match(&self) -> bool {
        !self.matching.is_empty()
    }

    /// The same spec but for hosts.
    pub fn same_but_hosts(&self, other: &Spec) -> bool {
        self.path_prefix == other.path_prefix
            && self.matching == other.matching
            && self.tls == other.tls
            && !self.hosts.is_empty()
            && !other.hosts.is_empty()
    }

    /// The requests both `self` and `within` match, as one spec; `None` when there are none
    /// or it cannot be said.
    pub fn within(&self, within: &Spec) -> Option<Spec> {
        let hosts = match (self.hosts.is_empty(), within.hosts.is_empty()) {
            (true, _) => within.hosts.clone(),
            (false, true) => self.hosts.clone(),
            (false, false) => {
                let common: Vec<String> = self
                    .hosts
                    .iter()
                    .filter(|h| within.hosts.contains(h))
                    .cloned()
                    .collect();
                if common.is_empty() {
                    return None;
                }
                common
            }
        };
        let path_prefix = match (&self.path_prefix, &within.path_prefix) {
            (None, other) | (other, None) => other.clone(),
            (Some(a), Some(b)) if a.starts_with(b.as_str()) => Some(a.clone()),
            (Some(a), Some(b)) if b.starts_with(a.as_str()) => Some(b.clone()),
            _ => return None,
        };
        let tls = match (self.tls, within.tls) {
            (Some(a), Some(b)) if a != b => return None,
            (a, b) => a.or(b),
        };
        let mut matching = within.matching.clone();
        let mine = &self.matching;
        if !mine.methods.is_empty() {
            if matching.methods.is_empty() {
                matching.methods = mine.methods.clone();
            } else {
                matching.methods.retain(|m| mine.methods.contains(m));
                if matching.methods.is_empty() {
                    return None;
                }
            }
        }
        if !mine.client.is_empty() {
            if !matching.client.is_empty() && matching.client != mine.client {
                return None;
            }
            matching.client = mine.client.clone();
        }
        for (name, cond) in &mine.headers {
            match matching.headers.iter().find(|(n, _)| n == name) {
                Some((_, existing)) if existing != cond => return None,
                Some(_) => {}
                None => matching.headers.push((name.clone(), cond.clone())),
            }
        }
        for (name, cond) in &mine.query {
            match matching.query.iter().find(|(n, _)| n == name) {
                Some((_, existing)) if existing != cond => return None,
                Some(_) => {}
                None => matching.query.push((name.clone(), cond.clone())),
            }
        }
        let mut approximations = within.approximations.clone();
        approximations.extend(self.approximations.iter().cloned());
        Some(Spec {
            hosts,
            path_prefix,
            matching,
            tls,
            approximations,
        })
    }
}

fn not(negated: bool) -> &'static str {
    if negated {
        "!"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::acl::{parse_condition, resolve, AclTable};
    use super::*;

    fn specs(condition: &str) -> Vec<Result<Spec, String>> {
        let words: Vec<String> = condition.split_whitespace().map(str::to_string).collect();
        let condition = parse_condition(&words, false).expect("condition");
        resolve(&condition, &AclTable::default())
            .expect("resolve")
            .iter()
            .map(|atoms| Spec::from_atoms(atoms))
            .collect()
    }

    fn spec(condition: &str) -> Spec {
        specs(condition).remove(0).expect("spec")
    }

    #[test]
    fn each_test_lands_in_its_place() {
        let s = spec("{ hdr(host) -i Chat.Example.com:443 } { path_beg /owui/ } { method GET POST } { src 10.0.0.0/8 } { ssl_fc }");
        assert_eq!(s.hosts, ["chat.example.com"]);
        assert_eq!(s.path_prefix.as_deref(), Some("/owui/"));
        assert_eq!(s.matching.methods, ["GET", "POST"]);
        assert_eq!(s.matching.client, ["10.0.0.0/8"]);
        assert_eq!(s.tls, Some(true));
        assert!(s.approximations.is_empty());

        let s = spec("{ hdr(x-env) prod } { hdr(x-debug) -m found } !{ hdr(x-legacy) -m found } { hdr_beg(host) api. } { url_param(debug) 1 }");
        assert_eq!(
            s.matching.headers,
            [
                ("x-env".to_string(), Cond::Equals("prod".into())),
                ("x-debug".to_string(), Cond::Present),
                ("x-legacy".to_string(), Cond::Absent),
                ("host".to_string(), Cond::Prefix("api.".into())),
            ]
        );
        assert_eq!(
            s.matching.query,
            [("debug".to_string(), Cond::Equals("1".into()))]
        );

        let s = spec("{ hdr(user-agent) -i -m sub bot } { hdr_end(host) -i .example.com }");
        assert_eq!(s.matching.headers[0].1, Cond::Regex("(?i)bot".into()));
        assert_eq!(s.hosts, ["*.example.com"]);
        assert_eq!(s.approximations.len(), 1);
        let s = spec("{ hdr_end(host) example.com }");
        assert_eq!(s.hosts, ["example.com", "*.example.com"]);
        let s = spec("{ path /health }");
        assert_eq!(s.path_prefix.as_deref(), Some("/health"));
        assert!(s.approximations[0].contains("matches that path alone"));
        assert_eq!(spec("!{ ssl_fc }").tls, Some(false));
        assert!(!spec("TRUE").has_match());
    }

    #[test]
    fn what_a_route_cannot_say_is_an_error() {
        for condition in [
            "!{ src 10.0.0.0/8 }",
            "!{ hdr(host) a.test }",
            "!{ path_beg /x }",
            "!{ method GET }",
            "{ path_reg ^/x }",
            "{ path_beg /a } { path_beg /b }",
            "{ ssl_fc } !{ ssl_fc }",
            "FALSE",
            "!{ hdr(x-env) prod }",
        ] {
            let result = specs(condition).remove(0);
            assert!(result.is_err(), "{condition}: {result:?}");
        }
    }

    #[test]
    fn a_rule_within_a_route_narrows_it() {
        let route = spec("{ hdr(host) chat.test } { path_beg /api/ }");
        let rule = spec("{ path_beg /api/admin/ } { method POST }");
        let both = rule.within(&route).expect("overlap");
        assert_eq!(both.hosts, ["chat.test"]);
        assert_eq!(both.path_prefix.as_deref(), Some("/api/admin/"));
        assert_eq!(both.matching.methods, ["POST"]);
        assert!(spec("{ path_beg /other/ }").within(&route).is_none());
        assert!(spec("{ hdr(host) ai.test }").within(&route).is_none());
        assert!(spec("!{ ssl_fc }").within(&spec("{ ssl_fc }")).is_none());
        let wide = spec("{ hdr(user-agent) -m found }");
        let narrowed = wide.within(&Spec::default()).expect("any");
        assert_eq!(narrowed.matching.headers.len(), 1);
    }
}
