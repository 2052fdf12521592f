//! The serde mirror of a route's request rules (`match`, `countries`, `redirect`, `respond`,
//! `rewrite`, `headers`) and of the top-level `geoip`. Conditions and header maps stay YAML
//! values here: validation reads them entry by entry, so each gets its own positioned error.

use serde::Deserialize;

/// `routes[].match`: every condition given must hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub methods: Option<Vec<String>>,
    /// Header name → condition (`present`, `absent`, or a [`RawCondition`] mapping).
    pub headers: Option<serde_yaml::Mapping>,
    /// Query parameter name → condition.
    pub query: Option<serde_yaml::Mapping>,
    /// CIDR ranges the client address must be in.
    pub client: Option<Vec<String>>,
    /// `required`: a verified client certificate.
    pub client_cert: Option<String>,
}

/// A condition written as a mapping: exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub equals: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// `routes[].countries`: exactly one of `allow` and `deny`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCountries {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

/// `routes[].redirect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    /// A template: `{host}`, `{path}`, ... placeholders.
    pub to: String,
    pub status: Option<u16>,
}

/// `routes[].respond`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    pub status: Option<u16>,
    pub body: Option<String>,
    pub content_type: Option<String>,
}

/// `routes[].rewrite`: `prefix`, or `regex` with `to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub prefix: Option<String>,
    pub regex: Option<String>,
    pub to: Option<String>,
}

/// `routes[].headers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteHeaders {
    pub request: Option<RawHeaderRules>,
    pub response: Option<RawHeaderRules>,
}

/// `routes[].headers.request` or `.response`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRules {
    /// Header name → value template.
    pub set: Option<serde_yaml::Mapping>,
    pub add: Option<serde_yaml::Mapping>,
    pub remove: Option<Vec<String>>,
}

/// The top-level `geoip`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoip {
    /// A MaxMind-format database file.
    pub database: String,
}
