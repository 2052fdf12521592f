//! A route's compiled refusals: `deny_user_agents` (one regex set over the User-Agent) and
//! `countries` (the client address's country in the long-lived [`GeoipHandle`]). Each refusal
//! is a 403; pure but for the database lookup, which reads memory.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::USER_AGENT;
use http::HeaderMap;

use super::Refusal;
use crate::config::model::{Countries, CountryCode, Pattern, RouteRules};
use crate::geoip::GeoipHandle;

/// Why a route's refusals turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRefusal {
    /// The User-Agent matches `deny_user_agents`.
    UserAgent,
    /// The client's country is denied, or not allowed (or unknown on an `allow` list).
    Country,
}

impl RuleRefusal {
    /// The metric label (`ferrogate_security_rejections_total{reason}`).
    pub fn reason(self) -> &'static str {
        match self {
            Self::UserAgent => "user_agent",
            Self::Country => "country",
        }
    }

    /// The refusal it answers as: 403.
    pub fn refusal(self) -> Refusal {
        Refusal::Forbidden
    }
}

/// One route's compiled refusals.
#[derive(Debug, Clone)]
pub struct RouteRefusals {
    user_agents: Option<UserAgents>,
    countries: Option<CountryRule>,
}

/// `deny_user_agents`: one set when it compiles as one (it does unless huge), else each.
#[derive(Debug, Clone)]
enum UserAgents {
    Set(regex::bytes::RegexSet),
    Each(Vec<Pattern>),
}

#[derive(Debug, Clone)]
struct CountryRule {
    /// `true`: only `codes` pass; `false`: `codes` are refused.
    allow: bool,
    codes: Vec<CountryCode>,
    /// `None` only if the configuration had no database (validation refuses that): then an
    /// `allow` list refuses everyone and a `deny` list no one.
    database: Option<Arc<GeoipHandle>>,
}

impl RouteRefusals {
    /// The refusals of `rules`, with the country database in force; `None` when there are none.
    pub fn compile(rules: &RouteRules, geoip: Option<&Arc<GeoipHandle>>) -> Option<Self> {
        let user_agents = (!rules.deny_user_agents.is_empty()).then(|| {
            let sources = rules.deny_user_agents.iter().map(Pattern::as_str);
            match regex::bytes::RegexSet::new(sources) {
                Ok(set) => UserAgents::Set(set),
                Err(_) => UserAgents::Each(rules.deny_user_agents.clone()),
            }
        });
        let countries = rules.countries.as_ref().map(|countries| {
            let (allow, codes) = match countries {
                Countries::Allow(codes) => (true, codes.clone()),
                Countries::Deny(codes) => (false, codes.clone()),
            };
            CountryRule {
                allow,
                codes,
                database: geoip.cloned(),
            }
        });
        (user_agents.is_some() || countries.is_some()).then_some(Self {
            user_agents,
            countries,
        })
    }

    /// Whether a request with `headers` from `client` may pass.
    pub fn check(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<(), RuleRefusal> {
        if let Some(agents) = &self.user_agents {
            let denied = headers.get_all(USER_AGENT).iter().any(|value| {
                let value = value.as_bytes();
                match agents {
                    UserAgents::Set(set) => set.is_match(value),
                    UserAgents::Each(patterns) => {
                        patterns.iter().any(|p| p.regex().is_match(value))
                    }
                }
            });
            if denied {
                return Err(RuleRefusal::UserAgent);
            }
        }
        if let Some(rule) = &self.countries {
            let country = match (&rule.database, client) {
                (Some(database), Some(ip)) => database.country(ip),
                _ => None,
            };
            let listed = country.is_some_and(|code| rule.codes.contains(&code));
            // Unknown: `deny` lets it pass, `allow` refuses it.
            if listed != rule.allow {
                return Err(RuleRefusal::Country);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::geoip::GeoipDatabase;

    fn geoip() -> Arc<GeoipHandle> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geoip/countries.mmdb");
        Arc::new(GeoipHandle::new(
            &path,
            Arc::new(GeoipDatabase::open(&path).unwrap()),
        ))
    }

    fn codes(list: &[&str]) -> Vec<CountryCode> {
        list.iter()
            .map(|c| CountryCode::parse(c).unwrap())
            .collect()
    }

    fn agent(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, value.parse().unwrap());
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn user_agents_matching_any_regex_are_refused() {
        let rules = RouteRules {
            deny_user_agents: vec![
                Pattern::new("(?i)curl").unwrap(),
                Pattern::new("python-requests").unwrap(),
            ],
            ..Default::default()
        };
        let refusals = RouteRefusals::compile(&rules, None).unwrap();
        assert_eq!(
            refusals.check(&agent("CURL/8.5"), None),
            Err(RuleRefusal::UserAgent)
        );
        assert_eq!(
            refusals.check(&agent("python-requests/2.31"), None),
            Err(RuleRefusal::UserAgent)
        );
        assert_eq!(refusals.check(&agent("Mozilla/5.0"), None), Ok(()));
        assert_eq!(refusals.check(&HeaderMap::new(), None), Ok(()));
        assert_eq!(RuleRefusal::UserAgent.refusal(), Refusal::Forbidden);
        assert!(RouteRefusals::compile(&RouteRules::default(), None).is_none());
    }

    #[test]
    fn deny_lets_unknown_addresses_pass_and_allow_refuses_them() {
        let deny = RouteRules {
            countries: Some(Countries::Deny(codes(&["RU", "KP"]))),
            ..Default::default()
        };
        let deny = RouteRefusals::compile(&deny, Some(&geoip())).unwrap();
        let none = HeaderMap::new();
        assert_eq!(
            deny.check(&none, ip("198.51.100.4")),
            Err(RuleRefusal::Country)
        );
        assert_eq!(deny.check(&none, ip("192.0.2.4")), Ok(()));
        assert_eq!(
            deny.check(&none, ip("10.0.0.1")),
            Ok(()),
            "unknown passes a deny list"
        );
        assert_eq!(deny.check(&none, None), Ok(()));

        let allow = RouteRules {
            countries: Some(Countries::Allow(codes(&["DE", "FR", "NL"]))),
            ..Default::default()
        };
        let allow = RouteRefusals::compile(&allow, Some(&geoip())).unwrap();
        assert_eq!(allow.check(&none, ip("192.0.2.4")), Ok(()));
        assert_eq!(allow.check(&none, ip("2001:db8::1")), Ok(()));
        assert_eq!(
            allow.check(&none, ip("203.0.113.1")),
            Ok(()),
            "registered country"
        );
        assert_eq!(
            allow.check(&none, ip("198.51.100.4")),
            Err(RuleRefusal::Country)
        );
        assert_eq!(
            allow.check(&none, ip("10.0.0.1")),
            Err(RuleRefusal::Country),
            "unknown is refused by an allow list"
        );
        assert_eq!(allow.check(&none, None), Err(RuleRefusal::Country));
    }
}
