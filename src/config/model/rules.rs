//! A route's validated request rules: what it answers with (`upstream`, `redirect`, `respond`),
//! the conditions of its `match`, its refusals (`deny_user_agents`, `countries`), its `rewrite`
//! and its header rules, with value templates already parsed into their parts.

use http::{HeaderName, Method};

use super::Cidr;
pub use crate::geoip::CountryCode;

/// Default status of a `redirect`.
pub const DEFAULT_REDIRECT_STATUS: u16 = 302;
/// Default status of a `respond`.
pub const DEFAULT_RESPOND_STATUS: u16 = 200;
/// Default `Content-Type` of a `respond` with a body.
pub const DEFAULT_RESPOND_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// What a route does with a request that reaches it: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to the named upstream.
    Upstream(String),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    Respond(FixedResponse),
}

/// `redirect: { to, status }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The `Location`, with placeholders.
    pub to: Template,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// `respond: { status, body, content_type }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedResponse {
    pub status: u16,
    pub body: String,
    /// `None` when the response has no body.
    pub content_type: Option<String>,
}

/// A value with placeholders (`redirect.to`, header values), parsed into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

/// One part of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text as written (`{{` and `}}` already made single braces).
    Literal(String),
    /// `{host}`: the request's host without port.
    Host,
    /// `{path}`: path and query as received.
    Path,
    /// `{scheme}`: `http` or `https`.
    Scheme,
    /// `{client_ip}`: the client address.
    ClientIp,
    /// `{request_id}`: the request's id.
    RequestId,
}

impl Template {
    /// The text of a template without placeholders.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [TemplatePart::Literal(text)] => Some(text),
            _ => None,
        }
    }
}

/// A regex matched against bytes (header and query values, User-Agent).
#[derive(Debug, Clone)]
pub struct Pattern(regex::bytes::Regex);

impl Pattern {
    /// Compiles `source` (Rust regex syntax).
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        regex::bytes::Regex::new(source).map(Self)
    }

    pub fn regex(&self) -> &regex::bytes::Regex {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Pattern {}

/// A regex matched against a path (`rewrite.regex`).
#[derive(Debug, Clone)]
pub struct PathPattern(regex::Regex);

impl PathPattern {
    /// Compiles `source` (Rust regex syntax).
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        regex::Regex::new(source).map(Self)
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.0
    }
}

impl PartialEq for PathPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for PathPattern {}

/// A condition on a header or query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Present,
    Absent,
    /// Some value is exactly this.
    Equals(String),
    /// Some value starts with this.
    Prefix(String),
    /// Some value matches.
    Regex(Pattern),
}

/// `routes[].match`: every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteMatch {
    /// Any of these (upper case); empty = any method.
    pub methods: Vec<Method>,
    /// Lower-case names, file order.
    pub headers: Vec<(HeaderName, Condition)>,
    /// Parameter names as written, file order.
    pub query: Vec<(String, Condition)>,
    /// The client address is in one of these; empty = any.
    pub client: Vec<Cidr>,
    /// A verified client certificate is required.
    pub client_cert: bool,
}

/// `routes[].countries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Countries {
    /// Only these; an address the database does not know is refused.
    Allow(Vec<CountryCode>),
    /// All but these; an address the database does not know passes.
    Deny(Vec<CountryCode>),
}

/// `routes[].rewrite` (and `strip_prefix: true`, which is `Prefix("/")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// The matched `path_prefix` replaced by this.
    Prefix(String),
    /// The first match of `pattern` in the path replaced by `to` (`$1`, `${name}`).
    Regex { pattern: PathPattern, to: String },
}

/// `routes[].headers.request` or `.response`: applied as remove, then set, then add.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRules {
    pub remove: Vec<HeaderName>,
    /// Replaces every value of the header.
    pub set: Vec<(HeaderName, Template)>,
    /// Appends one value.
    pub add: Vec<(HeaderName, Template)>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// A route's request rules besides host, path and its action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteRules {
    /// `None`: the route takes every request its host and path fit.
    pub matcher: Option<RouteMatch>,
    /// A User-Agent matching one of these is refused (403).
    pub deny_user_agents: Vec<Pattern>,
    pub countries: Option<Countries>,
    pub rewrite: Option<Rewrite>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
}
