//! HAProxy ACLs and conditions: what an `acl` line tests (`hdr(host) -i`, `hdr_beg(host)`,
//! `hdr_end(host)`, `path_beg`, `path`, `src`, `method`, `hdr(NAME)`, `ssl_fc`, `url_param`,
//! the predefined ones), and a condition (`if`/`unless`, `!`, `||`/`or`, anonymous `{ … }`)
//! turned into a disjunction of conjunctions of tests, ready to become routes.

use std::collections::HashMap;

/// What a test reads from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The Host header (`hdr(host)` and its `_beg`/`_end`/… forms).
    Host,
    /// The path, without the query (`path`, `path_beg`, …).
    Path,
    /// The client address.
    Src,
    Method,
    /// The connection is TLS.
    SslFc,
    /// Another request header, lowercased.
    Header(String),
    /// A query parameter (`url_param(NAME)`, `urlp(NAME)`).
    Query(String),
    /// `TRUE`, `FALSE`, `HTTP`.
    Always(bool),
}

/// How the fetched text is compared with the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    Exact,
    Prefix,
    Suffix,
    Substring,
    Regex,
    /// The header or parameter is present (`-m found`).
    Found,
    /// An address within a CIDR range (`src`).
    Ip,
    /// A boolean fetch (`ssl_fc`, `TRUE`).
    Bool,
}

/// One test: any of `values` (HAProxy ORs an ACL line's values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub fetch: Fetch,
    pub matching: Matching,
    pub values: Vec<String>,
    /// `-i`
    pub case_insensitive: bool,
}

impl Test {
    fn new(fetch: Fetch, matching: Matching, values: Vec<String>) -> Self {
        Self {
            fetch,
            matching,
            values,
            case_insensitive: false,
        }
    }

    /// Whether a route can hold all values of this test in one condition (a host list, a
    /// method list, a CIDR list), rather than one route per value.
    fn groups_values(&self) -> bool {
        matches!(
            (&self.fetch, self.matching),
            (Fetch::Host, Matching::Exact | Matching::Suffix)
                | (Fetch::Method | Fetch::Src, _)
                | (Fetch::SslFc | Fetch::Always(_), _)
        ) || self.values.len() <= 1
    }

    /// The same test for each value alone.
    fn split(&self) -> Vec<Test> {
        if self.groups_values() {
            return vec![self.clone()];
        }
        self.values
            .iter()
            .map(|v| Test {
                values: vec![v.clone()],
                ..self.clone()
            })
            .collect()
    }

    /// The test as HAProxy would write it (for comments and notes).
    pub fn describe(&self) -> String {
        let fetch = match &self.fetch {
            Fetch::Host => "hdr(host)".to_string(),
            Fetch::Path => "path".to_string(),
            Fetch::Src => "src".to_string(),
            Fetch::Method => "method".to_string(),
            Fetch::SslFc => return "ssl_fc".to_string(),
            Fetch::Header(name) => format!("hdr({name})"),
            Fetch::Query(name) => format!("url_param({name})"),
            Fetch::Always(true) => return "TRUE".to_string(),
            Fetch::Always(false) => return "FALSE".to_string(),
        };
        let suffix = match self.matching {
            Matching::Prefix => "_beg",
            Matching::Suffix => "_end",
            Matching::Substring => "_sub",
            Matching::Regex => "_reg",
            Matching::Found => return format!("{fetch} -m found"),
            _ => "",
        };
        let fetch = match fetch.split_once('(') {
            Some((base, arg)) if !suffix.is_empty() => format!("{base}{suffix}({arg}"),
            _ => format!("{fetch}{suffix}"),
        };
        let flag = if self.case_insensitive { " -i" } else { "" };
        format!("{fetch}{flag} {}", self.values.join(" "))
    }
}

/// `-m` names.
fn matching_of(method: &str) -> Option<Matching> {
    Some(match method {
        "str" => Matching::Exact,
        "beg" => Matching::Prefix,
        "end" => Matching::Suffix,
        "sub" => Matching::Substring,
        "reg" => Matching::Regex,
        "found" => Matching::Found,
        "ip" => Matching::Ip,
        "bool" => Matching::Bool,
        _ => return None,
    })
}

/// The fetch and default matching of a criterion such as `hdr_beg(host)` or `path`.
fn criterion(word: &str) -> Result<(Fetch, Matching), String> {
    let (base, arg) = match word.split_once('(') {
        Some((base, rest)) => {
            let arg = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("`{word}` lacks its closing parenthesis"))?;
            // `hdr(host,1)`: the occurrence does not matter for a single-valued header.
            let arg = arg.split(',').next().unwrap_or_default().trim();
            (base, Some(arg.to_ascii_lowercase()))
        }
        None => (word, None),
    };
    let (family, matching) = match base.rsplit_once('_') {
        Some((family, "beg")) => (family, Matching::Prefix),
        Some((family, "end")) => (family, Matching::Suffix),
        Some((family, "sub")) => (family, Matching::Substring),
        Some((family, "reg")) => (family, Matching::Regex),
        Some((family, "dom")) => (family, Matching::Suffix),
        _ => (base, Matching::Exact),
    };
    let domain = base.ends_with("_dom");
    let header = |arg: Option<String>| -> Result<Fetch, String> {
        match arg.as_deref() {
            Some("host") => Ok(Fetch::Host),
            Some(name) if !name.is_empty() => Ok(Fetch::Header(name.to_string())),
            _ => Err(format!("`{word}` needs a header name")),
        }
    };
    let fetch = match family {
        "hdr" | "req.hdr" | "req.fhdr" if !domain => header(arg)?,
        "path" if arg.is_none() && !domain => Fetch::Path,
        "src" if arg.is_none() && matching == Matching::Exact => {
            return Ok((Fetch::Src, Matching::Ip))
        }
        "method" if arg.is_none() && matching == Matching::Exact => Fetch::Method,
        "ssl_fc" if arg.is_none() => return Ok((Fetch::SslFc, Matching::Bool)),
        "url_param" | "urlp" => match arg {
            Some(name) if !name.is_empty() => Fetch::Query(name),
            _ => return Err(format!("`{word}` needs a parameter name")),
        },
        _ => {
            return Err(format!(
                "the criterion `{word}` has no ferrogate equivalent (translated: hdr(host), hdr_beg/hdr_end(host), hdr(NAME) and its _beg/_end/_sub/_reg forms, path, path_beg, src, method, ssl_fc, url_param)"
            ))
        }
    };
    Ok((fetch, matching))
}

/// Parses the criterion, flags and values of an `acl` line or an anonymous `{ … }` ACL.
pub fn parse_test(words: &[String]) -> Result<Test, String> {
    let Some((first, rest)) = words.split_first() else {
        return Err("an ACL needs a criterion".into());
    };
    if let Some(test) = predefined(first) {
        return match rest.is_empty() {
            true => Ok(test),
            false => Err(format!("the predefined ACL `{first}` takes no values")),
        };
    }
    let (fetch, mut matching) = criterion(first)?;
    let mut case_insensitive = false;
    let mut values = Vec::new();
    let mut words = rest.iter();
    let mut flags = true;
    while let Some(word) = words.next() {
        if flags && word.starts_with('-') && word.len() > 1 {
            match word.as_str() {
                "-i" => case_insensitive = true,
                "-m" => {
                    let method = words.next().map(String::as_str).unwrap_or_default();
                    matching = matching_of(method).ok_or_else(|| {
                        format!("the match method `-m {method}` is not translated")
                    })?;
                }
                "-f" => {
                    return Err(
                        "values read from a file (`-f`) are not translated: list them in the route"
                            .into(),
                    )
                }
                "--" => flags = false,
                "-n" | "-u" => {}
                other => return Err(format!("the ACL flag `{other}` is not translated")),
            }
            continue;
        }
        flags = false;
        values.push(word.clone());
    }
    if values.is_empty() && !matches!(matching, Matching::Found | Matching::Bool) {
        if matches!(fetch, Fetch::Header(_) | Fetch::Query(_)) {
            // `hdr(x)` alone: true when the header is present with a non-empty value.
            matching = Matching::Found;
        } else {
            return Err(format!("`{first}` is given no value to match"));
        }
    }
    Ok(Test {
        fetch,
        matching,
        values,
        case_insensitive,
    })
}

/// HAProxy's predefined ACLs that mean something here.
fn predefined(name: &str) -> Option<Test> {
    let methods = |list: &[&str]| {
        Test::new(
            Fetch::Method,
            Matching::Exact,
            list.iter().map(|m| m.to_string()).collect(),
        )
    };
    Some(match name {
        "TRUE" | "HTTP" => Test::new(Fetch::Always(true), Matching::Bool, Vec::new()),
        "FALSE" => Test::new(Fetch::Always(false), Matching::Bool, Vec::new()),
        "LOCALHOST" => Test::new(Fetch::Src, Matching::Ip, vec!["127.0.0.1/8".into()]),
        "METH_GET" => methods(&["GET", "HEAD"]),
        "METH_HEAD" => methods(&["HEAD"]),
        "METH_POST" => methods(&["POST"]),
        "METH_PUT" => methods(&["PUT"]),
        "METH_DELETE" => methods(&["DELETE"]),
        "METH_OPTIONS" => methods(&["OPTIONS"]),
        "METH_CONNECT" => methods(&["CONNECT"]),
        "METH_TRACE" => methods(&["TRACE"]),
        _ => return None,
    })
}

/// One definition of a named ACL (a name may be defined on several lines: they are ORed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclDefinition {
    pub line: usize,
    pub test: Test,
}

/// The named ACLs of one section.
#[derive(Debug, Clone, Default)]
pub struct AclTable {
    acls: HashMap<String, Vec<AclDefinition>>,
}

impl AclTable {
    pub fn define(&mut self, name: &str, line: usize, test: Test) {
        self.acls
            .entry(name.to_string())
            .or_default()
            .push(AclDefinition { line, test });
    }

    pub fn get(&self, name: &str) -> Option<&[AclDefinition]> {
        self.acls.get(name).map(Vec::as_slice)
    }
}

/// A reference in a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclRef {
    Named(String),
    Inline(Test),
}

/// A possibly negated reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub negated: bool,
    pub acl: AclRef,
}

/// `if …` / `unless …`: literals ANDed, terms ORed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub unless: bool,
    pub terms: Vec<Vec<Literal>>,
}

/// Parses the words after `if` or `unless` (`unless` given as true).
pub fn parse_condition(words: &[String], unless: bool) -> Result<Condition, String> {
    let mut terms: Vec<Vec<Literal>> = vec![Vec::new()];
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        i += 1;
        if word == "||" || word == "or" {
            terms.push(Vec::new());
            continue;
        }
        let (negated, word) = match word.strip_prefix('!') {
            Some("") => {
                let next = words.get(i).map(String::as_str).unwrap_or_default();
                i += 1;
                (true, next)
            }
            Some(rest) => (true, rest),
            None => (false, word),
        };
        let acl = if word == "{" {
            let end = words[i..]
                .iter()
                .position(|w| w == "}")
                .ok_or("an anonymous ACL `{` is never closed")?;
            let test = parse_test(&words[i..i + end])?;
            i += end + 1;
            AclRef::Inline(test)
        } else if word.is_empty() || word == "}" {
            return Err("a condition is incomplete".into());
        } else {
            AclRef::Named(word.to_string())
        };
        if let Some(term) = terms.last_mut() {
            term.push(Literal { negated, acl });
        }
    }
    if terms.iter().any(Vec::is_empty) {
        return Err("a condition has an empty part around `||`".into());
    }
    Ok(Condition { unless, terms })
}

/// Splits the words of a rule at `if`/`unless`: the action's words and the condition, if any.
pub fn split_condition(words: &[String]) -> Result<(&[String], Option<Condition>), String> {
    match words.iter().position(|w| w == "if" || w == "unless") {
        Some(at) => {
            let condition = parse_condition(&words[at + 1..], words[at] == "unless")?;
            Ok((&words[..at], Some(condition)))
        }
        None => Ok((words, None)),
    }
}

/// A test, possibly negated: one condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    pub negated: bool,
    pub test: Test,
}

/// A condition as alternatives (OR), each a set of atoms that must all hold (AND).
pub type Alternatives = Vec<Vec<Atom>>;

/// Most alternatives a condition may expand to.
const MAX_ALTERNATIVES: usize = 64;

fn product(left: Alternatives, right: &Alternatives) -> Result<Alternatives, String> {
    let mut out = Vec::with_capacity(left.len() * right.len());
    for l in &left {
        for r in right {
            let mut term = l.clone();
            term.extend(r.iter().cloned());
            out.push(term);
        }
    }
    if out.len() > MAX_ALTERNATIVES {
        return Err(format!(
            "the condition expands to more than {MAX_ALTERNATIVES} routes"
        ));
    }
    Ok(out)
}

/// The alternatives of one literal.
fn literal_alternatives(literal: &Literal, acls: &AclTable) -> Result<Alternatives, String> {
    let tests: Vec<Test> = match &literal.acl {
        AclRef::Inline(test) => vec![test.clone()],
        AclRef::Named(name) => match (acls.get(name), predefined(name)) {
            (Some(definitions), _) => definitions.iter().map(|d| d.test.clone()).collect(),
            (None, Some(test)) => vec![test],
            (None, None) => return Err(format!("no ACL named `{name}` in this section")),
        },
    };
    if literal.negated {
        // Not (a or b): not a, and not b.
        let term = tests
            .into_iter()
            .map(|test| Atom {
                negated: true,
                test,
            })
            .collect();
        return Ok(vec![term]);
    }
    Ok(tests
        .iter()
        .flat_map(Test::split)
        .map(|test| {
            vec![Atom {
                negated: false,
                test,
            }]
        })
        .collect())
}

fn negate(literal: &Literal) -> Literal {
    Literal {
        negated: !literal.negated,
        acl: literal.acl.clone(),
    }
}

/// The condition as alternatives of atoms, ACL names resolved in `acls`.
pub fn resolve(condition: &Condition, acls: &AclTable) -> Result<Alternatives, String> {
    let terms: Vec<Vec<Literal>> = if condition.unless {
        // unless (A and B) or C  =  if (not A or not B) and not C
        let mut expanded: Vec<Vec<Literal>> = vec![Vec::new()];
        for term in &condition.terms {
            let mut next = Vec::new();
            for partial in &expanded {
                for literal in term {
                    let mut with = partial.clone();
                    with.push(negate(literal));
                    next.push(with);
                }
            }
            if next.len() > MAX_ALTERNATIVES {
                return Err(format!(
                    "the condition expands to more than {MAX_ALTERNATIVES} routes"
                ));
            }
            expanded = next;
        }
        expanded
    } else {
        condition.terms.clone()
    };
    let mut out = Vec::new();
    for term in &terms {
        let mut alternatives: Alternatives = vec![Vec::new()];
        for literal in term {
            alternatives = product(alternatives, &literal_alternatives(literal, acls)?)?;
        }
        out.extend(alternatives);
    }
    if out.len() > MAX_ALTERNATIVES {
        return Err(format!(
            "the condition expands to more than {MAX_ALTERNATIVES} routes"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    fn test(text: &str) -> Test {
        parse_test(&words(text)).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn criteria_become_fetches_and_matchings() {
        let host = test("hdr(host) -i chat.example.com ai.example.com");
        assert_eq!(host.fetch, Fetch::Host);
        assert_eq!(host.matching, Matching::Exact);
        assert!(host.case_insensitive);
        assert_eq!(host.values, ["chat.example.com", "ai.example.com"]);
        assert_eq!(test("hdr_beg(host) api.").matching, Matching::Prefix);
        assert_eq!(test("hdr_end(Host) -i .example.com").fetch, Fetch::Host);
        assert_eq!(test("path_beg /owui/").fetch, Fetch::Path);
        assert_eq!(test("path /health").matching, Matching::Exact);
        assert_eq!(test("src 10.0.0.0/8 192.168.1.5").matching, Matching::Ip);
        assert_eq!(test("method GET POST").values, ["GET", "POST"]);
        assert_eq!(test("ssl_fc").fetch, Fetch::SslFc);
        assert_eq!(test("hdr(X-Env) prod").fetch, Fetch::Header("x-env".into()));
        assert_eq!(test("req.hdr(x-debug) -m found").matching, Matching::Found);
        assert_eq!(test("hdr(x-debug)").matching, Matching::Found);
        assert_eq!(test("hdr_reg(user-agent) ^curl").matching, Matching::Regex);
        assert_eq!(
            test("hdr(user-agent) -m sub bot").matching,
            Matching::Substring
        );
        assert_eq!(
            test("url_param(debug) 1").fetch,
            Fetch::Query("debug".into())
        );
        assert_eq!(test("METH_GET").values, ["GET", "HEAD"]);
        assert_eq!(test("LOCALHOST").fetch, Fetch::Src);
        for bad in [
            "base_beg /x",
            "path_beg -f /etc/paths",
            "hdr(host) -m dom x",
            "path_beg",
            "req.body_len 1",
            "hdr_cnt(host) 1",
        ] {
            assert!(parse_test(&words(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn describe_gives_the_haproxy_spelling_back() {
        assert_eq!(
            test("hdr_beg(host) -i api.").describe(),
            "hdr_beg(host) -i api."
        );
        assert_eq!(test("path_beg /a /b").describe(), "path_beg /a /b");
        assert_eq!(test("ssl_fc").describe(), "ssl_fc");
        assert_eq!(test("hdr(x) -m found").describe(), "hdr(x) -m found");
    }

    fn table() -> AclTable {
        let mut acls = AclTable::default();
        acls.define("chat", 1, test("hdr(host) -i chat.test ai.test"));
        acls.define("chat", 2, test("path_beg /owui/ /chat/"));
        acls.define("api", 3, test("path_beg /v1/"));
        acls.define("internal", 4, test("src 10.0.0.0/8"));
        acls
    }

    fn resolve_text(text: &str) -> Alternatives {
        let (unless, rest) = match text.strip_prefix("unless ") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let condition = parse_condition(&words(rest), unless).expect("condition");
        resolve(&condition, &table()).expect("resolve")
    }

    #[test]
    fn named_acls_or_their_definitions_and_split_paths() {
        let alternatives = resolve_text("chat");
        // One host list, and one alternative per path.
        assert_eq!(alternatives.len(), 3);
        assert_eq!(alternatives[0][0].test.values, ["chat.test", "ai.test"]);
        assert_eq!(alternatives[1][0].test.values, ["/owui/"]);
        assert_eq!(alternatives[2][0].test.values, ["/chat/"]);
    }

    #[test]
    fn and_or_not_and_anonymous_acls() {
        let alternatives = resolve_text("api internal || { ssl_fc } !internal");
        assert_eq!(alternatives.len(), 2);
        assert_eq!(alternatives[0].len(), 2);
        assert!(!alternatives[0][1].negated);
        assert_eq!(alternatives[1][0].test.fetch, Fetch::SslFc);
        assert!(alternatives[1][1].negated);
        let alternatives = resolve_text("api or !{ path_beg /x }");
        assert_eq!(alternatives.len(), 2);
        assert!(alternatives[1][0].negated);
        // Negating a name defined twice: neither definition may hold.
        let alternatives = resolve_text("!chat");
        assert_eq!(alternatives.len(), 1);
        assert_eq!(alternatives[0].len(), 2);
        assert!(alternatives[0].iter().all(|a| a.negated));
    }

    #[test]
    fn unless_negates_the_whole_condition() {
        // unless ssl_fc  =  if !ssl_fc
        let alternatives = resolve_text("unless { ssl_fc }");
        assert_eq!(alternatives.len(), 1);
        assert!(alternatives[0][0].negated);
        // unless api internal  =  if !api || !internal
        let alternatives = resolve_text("unless api internal");
        assert_eq!(alternatives.len(), 2);
        // unless api || internal  =  if !api !internal
        let alternatives = resolve_text("unless api || internal");
        assert_eq!(alternatives.len(), 1);
        assert_eq!(alternatives[0].len(), 2);
    }

    #[test]
    fn bad_conditions_say_why() {
        let acls = table();
        for bad in ["nope", "api ||", "{ path_beg /x", "!", "{ base /x }"] {
            let result = parse_condition(&words(bad), false).and_then(|c| resolve(&c, &acls));
            assert!(result.is_err(), "{bad}");
        }
        let rule = words("use_backend b if api");
        let (action, condition) = split_condition(&rule).expect("split");
        assert_eq!(action, ["use_backend", "b"]);
        assert!(condition.is_some());
    }
}
