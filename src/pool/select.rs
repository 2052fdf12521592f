//! Choosing a member for one request: the sticky target if it can take it (not in maintenance),
//! otherwise the policy over available, untried members with room that take new clients (not
//! draining, not in maintenance, runtime weight not 0), by the weight in force; then (re)stick. Takes an in-flight
//! slot on the chosen server in the same step, so `max_inflight` is never exceeded.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::COOKIE;
use http::HeaderMap;

use super::members::{Member, StickyKey, UpstreamPool};
use super::server::InflightGuard;
use crate::balance::policy::{self, Candidate, WEIGHT_SCALE};
use crate::balance::sticky::{find_cookie, parse_id};
use crate::config::model::{Balance, HashKey, Inference, Sticky, StickyMode};
use crate::inference::request::InferenceFacts;

pub mod inference;

/// The request facts selection uses.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub client_ip: Option<IpAddr>,
    pub headers: &'a HeaderMap,
    /// Server ids this request already failed on.
    pub tried: &'a [u64],
    /// Model, prompt prefix and session of an inference request.
    pub inference: Option<&'a InferenceFacts>,
}

/// The upstream settings selection follows.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub balance: &'a Balance,
    pub sticky: Option<&'a Sticky>,
    pub slow_start: Option<Duration>,
    /// The upstream's `inference` settings.
    pub inference: Option<&'a Inference>,
    /// Whether a request may wait for a server (the upstream has a `queue`); without one a full
    /// server is never chosen when another has room.
    pub may_queue: bool,
}

/// A chosen server with its in-flight slot.
#[derive(Debug)]
pub struct Pick {
    pub member: Arc<Member>,
    pub guard: InflightGuard,
    /// The client must be (re)pinned with a cookie naming this member.
    pub set_cookie: bool,
    /// How an inference request's server was chosen.
    pub choice: Option<inference::Choice>,
}

/// The result of one selection attempt.
#[derive(Debug)]
pub enum Outcome {
    Picked(Pick),
    /// Servers exist but every eligible one is at `max_inflight`: wait in the queue.
    Full,
    /// No server can take the request.
    Unavailable,
}

fn cookie_values(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// Where the request says it is pinned, and the table key to pin it with.
fn sticky_lookup(
    pool: &UpstreamPool,
    sticky: &Sticky,
    req: &RequestInfo<'_>,
    now: Instant,
) -> (Option<u64>, Option<StickyKey>) {
    let key = match &sticky.mode {
        StickyMode::Cookie { name } => {
            let pinned = find_cookie(cookie_values(req.headers), name).and_then(parse_id);
            return (pinned, None);
        }
        StickyMode::ClientIp => req.client_ip.map(StickyKey::Ip),
        StickyMode::Header { name } => {
            header_text(req.headers, name).map(|v| StickyKey::Header(v.to_string()))
        }
    };
    let pinned = key.as_ref().and_then(|k| pool.sticky.lock().get(k, now));
    (pinned, key)
}

fn hash_key<'a>(key: &HashKey, req: &RequestInfo<'a>, ip_text: &'a mut String) -> &'a [u8] {
    let found = match key {
        HashKey::ClientIp => None,
        HashKey::Header(name) => header_text(req.headers, name),
        HashKey::Cookie(name) => find_cookie(cookie_values(req.headers), name),
    };
    if let Some(found) = found {
        return found.as_bytes();
    }
    *ip_text = req.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    ip_text.as_bytes()
}

fn has_room(m: &Member) -> bool {
    m.max_inflight.is_none_or(|max| m.state.inflight() < max)
}

impl UpstreamPool {
    /// Chooses a server for one request and takes an in-flight slot on it.
    pub fn select(&self, rules: &Rules<'_>, req: &RequestInfo<'_>, now: Instant) -> Outcome {
        let members = self.members();
        if members.is_empty() {
            return Outcome::Unavailable;
        }
        let (pinned, table_key) = match rules.sticky {
            Some(sticky) => sticky_lookup(self, sticky, req, now),
            None => (None, None),
        };
        if let Some(id) = pinned {
            // Draining servers keep their sticky clients; down, ejected or maintained ones lose
            // them.
            let target = members.iter().find(|m| {
                m.id == id
                    && !req.tried.contains(&id)
                    && !m.in_maintenance()
                    && m.state.available(now)
            });
            if let Some(member) = target {
                return match member
                    .state
                    .try_acquire(member.max_inflight, &self.released)
                {
                    Some(guard) => {
                        member.state.count_sticky_hit();
                        self.stick(rules, table_key, member.id, now);
                        Outcome::Picked(Pick {
                            member: member.clone(),
                            guard,
                            set_cookie: false,
                            choice: None,
                        })
                    }
                    None => Outcome::Full,
                };
            }
        }
        let untried = |m: &&Arc<Member>| m.takes_new_clients() && !req.tried.contains(&m.id);
        let mut eligible: Vec<&Arc<Member>> = members
            .iter()
            .filter(untried)
            .filter(|m| m.state.available(now))
            .collect();
        if eligible.is_empty()
            && !members
                .iter()
                .any(|m| m.takes_new_clients() && m.state.available(now))
        {
            // Panic mode: every server is marked bad; trying one beats refusing everyone.
            eligible = members.iter().filter(untried).collect();
        }
        if let Some(facts) = req.inference {
            eligible.retain(|m| inference::serves(m, &facts.model));
        }
        if eligible.is_empty() {
            return Outcome::Unavailable;
        }
        // `cache_aware` with a queue keeps full servers in view: a request whose prompt prefix a
        // full server holds waits for that server (see `inference::choose`) instead of
        // recomputing the prefix on whichever server frees a slot first. Without a queue waiting
        // means a 503, so only servers with room count.
        let prefix_waits = matches!(rules.balance, Balance::CacheAware)
            && rules.may_queue
            && rules.inference.is_some()
            && req.inference.is_some_and(|f| !f.hashes.is_empty());
        if !matches!(rules.balance, Balance::Hash(_)) && !prefix_waits {
            eligible.retain(|m| has_room(m));
            if eligible.is_empty() {
                return Outcome::Full;
            }
        }
        let candidates: Vec<Candidate> = eligible
            .iter()
            .map(|m| {
                let factor = m.state.weight_factor(rules.slow_start, now);
                let full = f64::from(m.current_weight() * WEIGHT_SCALE);
                Candidate {
                    weight: ((full * factor).round() as u32).max(1),
                    inflight: m.state.inflight(),
                    id: m.id,
                }
            })
            .collect();
        let mut choice = None;
        let index = match (req.inference, rules.inference) {
            (Some(facts), Some(settings)) if !matches!(rules.balance, Balance::Hash(_)) => {
                let ticket = self.ticket.fetch_add(1, Ordering::Relaxed);
                choice =
                    inference::choose(self, rules.balance, settings, facts, &eligible, ticket, now);
                choice.map(|c| c.index)
            }
            _ => self.choose(rules, req, &eligible, &candidates),
        };
        let Some(index) = index else {
            return Outcome::Unavailable;
        };
        let member = eligible[index];
        let Some(mut guard) = member
            .state
            .try_acquire(member.max_inflight, &self.released)
        else {
            return Outcome::Full;
        };
        if let (Some(facts), Some(predicted)) = (req.inference, choice.and_then(|c| c.predicted)) {
            // Only a request that goes teaches the model; a waiting one chooses again.
            inference::commit(self, facts, member, &predicted, now);
            if predicted.queue_secs > 0.0 {
                guard.skip_service_time();
            }
        }
        self.stick(rules, table_key, member.id, now);
        Outcome::Picked(Pick {
            member: member.clone(),
            guard,
            set_cookie: matches!(
                rules.sticky.map(|s| &s.mode),
                Some(StickyMode::Cookie { .. })
            ) && pinned != Some(member.id),
            choice,
        })
    }

    /// Servers a retry could still go to: what [`Self::select`] would consider, minus `tried`.
    pub fn retry_candidates(&self, tried: &[u64], now: Instant) -> usize {
        let members = self.members();
        let untried = |m: &&Arc<Member>| m.takes_new_clients() && !tried.contains(&m.id);
        let healthy = members
            .iter()
            .filter(untried)
            .filter(|m| m.state.available(now))
            .count();
        if healthy == 0
            && !members
                .iter()
                .any(|m| m.takes_new_clients() && m.state.available(now))
        {
            return members.iter().filter(untried).count();
        }
        healthy
    }

    fn choose(
        &self,
        rules: &Rules<'_>,
        req: &RequestInfo<'_>,
        eligible: &[&Arc<Member>],
        candidates: &[Candidate],
    ) -> Option<usize> {
        match rules.balance {
            Balance::RoundRobin => {
                let _held = self.rr_lock.lock();
                let mut current: Vec<i64> = eligible
                    .iter()
                    .map(|m| m.state.rr_current.load(Ordering::Relaxed))
                    .collect();
                let index = policy::smooth_weighted(candidates, &mut current)?;
                for (m, c) in eligible.iter().zip(current) {
                    m.state.rr_current.store(c, Ordering::Relaxed);
                }
                Some(index)
            }
            Balance::LeastInflight | Balance::Metrics | Balance::CacheAware => {
                let ticket = self.ticket.fetch_add(1, Ordering::Relaxed);
                policy::least_inflight(candidates, ticket)
            }
            Balance::P2c => policy::p2c(candidates, fastrand::u64(..), fastrand::u64(..)),
            Balance::Hash(key) => {
                let mut ip_text = String::new();
                policy::rendezvous(candidates, hash_key(key, req, &mut ip_text))
            }
        }
    }

    fn stick(&self, rules: &Rules<'_>, key: Option<StickyKey>, id: u64, now: Instant) {
        if let (Some(sticky), Some(key)) = (rules.sticky, key) {
            self.sticky.lock().insert(key, id, sticky.ttl, now);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_admin;

#[cfg(test)]
mod tests_inference;
