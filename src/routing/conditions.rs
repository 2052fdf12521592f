//! A route's compiled `match`: methods, header and query conditions, client ranges and the
//! client certificate, evaluated over [`RequestFacts`]. Pure; every regex and name is made once
//! when the snapshot is compiled.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method};

use crate::config::model::{Cidr, Condition, RouteMatch};

/// What a `match` looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The query string without `?`, as received.
    pub query: Option<&'a str>,
    /// The client address (the PROXY source, or the trusted X-Forwarded-For one).
    pub client_ip: Option<IpAddr>,
    /// The connection presented a client certificate that verified.
    pub client_cert: bool,
}

/// A compiled `match`: every condition must hold.
#[derive(Debug, Clone)]
pub struct RequestMatch {
    methods: Vec<Method>,
    headers: Vec<(HeaderName, Condition)>,
    query: Vec<(String, Condition)>,
    client: Vec<Cidr>,
    client_cert: bool,
}

impl RequestMatch {
    pub fn compile(settings: &RouteMatch) -> Self {
        Self {
            methods: settings.methods.clone(),
            headers: settings.headers.clone(),
            query: settings.query.clone(),
            client: settings.client.clone(),
            client_cert: settings.client_cert,
        }
    }

    /// Whether the request described by `facts` meets every condition.
    pub fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(facts.method) {
            return false;
        }
        if self.client_cert && !facts.client_cert {
            return false;
        }
        if !self.client.is_empty() {
            let inside = facts
                .client_ip
                .is_some_and(|ip| self.client.iter().any(|range| range.contains(ip)));
            if !inside {
                return false;
            }
        }
        let headers_hold = self.headers.iter().all(|(name, condition)| {
            holds(
                condition,
                facts.headers.get_all(name).iter().map(|v| v.as_bytes()),
            )
        });
        if !headers_hold {
            return false;
        }
        self.query.iter().all(|(name, condition)| {
            let values = facts
                .query
                .into_iter()
                .flat_map(|query| form_urlencoded::parse(query.as_bytes()))
                .filter(|(key, _)| key == name)
                .map(|(_, value)| value);
            holds_owned(condition, values)
        })
    }
}

/// Whether `condition` holds for a name whose values are `values` (none = not present).
fn holds<'v>(condition: &Condition, mut values: impl Iterator<Item = &'v [u8]>) -> bool {
    match condition {
        Condition::Present => values.next().is_some(),
        Condition::Absent => values.next().is_none(),
        Condition::Equals(text) => values.any(|v| v == text.as_bytes()),
        Condition::Prefix(text) => values.any(|v| v.starts_with(text.as_bytes())),
        Condition::Regex(pattern) => values.any(|v| pattern.regex().is_match(v)),
    }
}

/// [`holds`] over decoded (owned or borrowed) text values.
fn holds_owned<S: AsRef<str>>(condition: &Condition, values: impl Iterator<Item = S>) -> bool {
    let mut values = values.peekable();
    match condition {
        Condition::Present => values.peek().is_some(),
        Condition::Absent => values.peek().is_none(),
        _ => values.any(|v| holds(condition, std::iter::once(v.as_ref().as_bytes()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Pattern;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn facts<'a>(
        method: &'a Method,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            method,
            headers,
            query,
            client_ip: Some("10.1.2.3".parse().unwrap()),
            client_cert: false,
        }
    }

    fn header(name: &str, condition: Condition) -> (HeaderName, Condition) {
        (HeaderName::from_bytes(name.as_bytes()).unwrap(), condition)
    }

    fn regex(source: &str) -> Condition {
        Condition::Regex(Pattern::new(source).unwrap())
    }

    #[test]
    fn every_condition_must_hold() {
        let compiled = RequestMatch::compile(&RouteMatch {
            methods: vec![Method::GET, Method::POST],
            headers: vec![
                header("x-env", Condition::Equals("prod".into())),
                header("x-debug", Condition::Present),
                header("x-legacy", Condition::Absent),
                header("user-agent", regex("^Mozilla/")),
            ],
            query: vec![("debug".into(), Condition::Equals("1".into()))],
            client: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            client_cert: false,
        });
        let good = headers(&[
            ("x-env", "prod"),
            ("x-debug", ""),
            ("user-agent", "Mozilla/5.0"),
        ]);
        let get = Method::GET;
        assert!(compiled.matches(&facts(&get, &good, Some("a=2&debug=1"))));
        // Each condition alone turns it down.
        assert!(!compiled.matches(&facts(&Method::DELETE, &good, Some("debug=1"))));
        assert!(!compiled.matches(&facts(&get, &good, Some("debug=2"))));
        assert!(!compiled.matches(&facts(&get, &good, None)));
        let mut legacy = good.clone();
        legacy.insert("x-legacy", "1".parse().unwrap());
        assert!(!compiled.matches(&facts(&get, &legacy, Some("debug=1"))));
        let curl = headers(&[
            ("x-env", "prod"),
            ("x-debug", "1"),
            ("user-agent", "curl/8"),
        ]);
        assert!(!compiled.matches(&facts(&get, &curl, Some("debug=1"))));
        let mut outside = facts(&get, &good, Some("debug=1"));
        outside.client_ip = Some("192.168.0.1".parse().unwrap());
        assert!(!compiled.matches(&outside));
        outside.client_ip = None;
        assert!(!compiled.matches(&outside));
        // IPv4-mapped IPv6 is the IPv4 address.
        let mut mapped = facts(&get, &good, Some("debug=1"));
        mapped.client_ip = Some("::ffff:10.9.9.9".parse().unwrap());
        assert!(compiled.matches(&mapped));
    }

    #[test]
    fn any_value_of_a_repeated_name_may_hold() {
        let compiled = RequestMatch::compile(&RouteMatch {
            headers: vec![header("x-tag", Condition::Prefix("blue".into()))],
            query: vec![("tag".into(), regex("^r.d$"))],
            ..Default::default()
        });
        let two = headers(&[("x-tag", "green"), ("x-tag", "blue-green")]);
        let get = Method::GET;
        assert!(compiled.matches(&facts(&get, &two, Some("tag=x&tag=red"))));
        assert!(!compiled.matches(&facts(&get, &two, Some("tag=x"))));
    }

    #[test]
    fn query_names_and_values_are_decoded() {
        let compiled = RequestMatch::compile(&RouteMatch {
            query: vec![
                ("a b".into(), Condition::Equals("c&d".into())),
                ("flag".into(), Condition::Present),
                ("off".into(), Condition::Absent),
            ],
            ..Default::default()
        });
        let none = HeaderMap::new();
        let get = Method::GET;
        assert!(compiled.matches(&facts(&get, &none, Some("a+b=c%26d&flag"))));
        assert!(!compiled.matches(&facts(&get, &none, Some("a+b=c%26d&flag&off=1"))));
        assert!(!compiled.matches(&facts(&get, &none, Some("a+b=c%26d"))));
    }

    #[test]
    fn a_client_certificate_is_required_only_when_asked() {
        let compiled = RequestMatch::compile(&RouteMatch {
            client_cert: true,
            ..Default::default()
        });
        let none = HeaderMap::new();
        let get = Method::GET;
        let mut request = facts(&get, &none, None);
        assert!(!compiled.matches(&request));
        request.client_cert = true;
        assert!(compiled.matches(&request));
        assert!(RequestMatch::compile(&RouteMatch::default()).matches(&facts(&get, &none, None)));
    }
}
