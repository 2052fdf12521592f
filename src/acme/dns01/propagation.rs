//! Propagation checks: follow a CNAME on `_acme-challenge` (delegation), find a name's zone by
//! SOA and its authoritative servers by NS, and wait until each server shows every TXT value.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, RecordType};

use super::wire::{self, query, txt_values};
use super::{DnsError, MAX_CNAME_HOPS};

/// Pause between two rounds of propagation queries.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The name the TXT record must really be put at: `fqdn` or the end of its CNAME chain.
pub async fn follow_cname(servers: &[SocketAddr], fqdn: &str) -> String {
    let mut current = fqdn.to_ascii_lowercase();
    for _ in 0..MAX_CNAME_HOPS {
        let Ok(name) = wire::name(&current) else {
            return current;
        };
        let mut next = None;
        for server in servers {
            if let Ok(answer) = query(*server, &name, RecordType::CNAME, true).await {
                next = cname_target(&answer, &name);
                break;
            }
        }
        match next {
            Some(target) => current = target,
            None => return current,
        }
    }
    current
}

fn cname_target(answer: &Message, name: &Name) -> Option<String> {
    answer.answers().iter().find_map(|record| {
        if record.name().to_lowercase() != name.to_lowercase() {
            return None;
        }
        match record.data() {
            RData::CNAME(target) => Some(target.0.to_lowercase().to_string()),
            _ => None,
        }
    })
}

/// The zone containing `fqdn` (its SOA owner), asking `servers`.
pub async fn find_zone(
    servers: &[SocketAddr],
    fqdn: &str,
    recursive: bool,
) -> Result<String, DnsError> {
    let name = wire::name(fqdn)?;
    let mut last_error = DnsError::NoServer {
        name: fqdn.to_string(),
    };
    for server in servers {
        match query(*server, &name, RecordType::SOA, recursive).await {
            Ok(answer) => {
                let soa_owner = answer
                    .answers()
                    .iter()
                    .chain(answer.name_servers())
                    .find(|record| record.record_type() == RecordType::SOA)
                    .map(|record| record.name().to_lowercase().to_string());
                if let Some(zone) = soa_owner {
                    return Ok(zone);
                }
                last_error = DnsError::NoSoa {
                    server: *server,
                    name: fqdn.to_string(),
                };
            }
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// The authoritative servers (port 53) of the zone holding `fqdn`, via the resolvers.
async fn authoritative(resolvers: &[SocketAddr], fqdn: &str) -> Result<Vec<SocketAddr>, DnsError> {
    let zone = find_zone(resolvers, fqdn, true).await?;
    let zone_name = wire::name(&zone)?;
    let mut hosts = Vec::new();
    for resolver in resolvers {
        if let Ok(answer) = query(*resolver, &zone_name, RecordType::NS, true).await {
            for record in answer.answers() {
                if let RData::NS(ns) = record.data() {
                    hosts.push(ns.0.clone());
                }
            }
            break;
        }
    }
    let mut addresses = Vec::new();
    for host in hosts {
        for record_type in [RecordType::A, RecordType::AAAA] {
            for resolver in resolvers {
                if let Ok(answer) = query(*resolver, &host, record_type, true).await {
                    for record in answer.answers() {
                        let ip: Option<IpAddr> = match record.data() {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            addresses.push(SocketAddr::new(ip, 53));
                        }
                    }
                    break;
                }
            }
        }
    }
    if addresses.is_empty() {
        return Err(DnsError::NoAuthoritative { zone });
    }
    Ok(addresses)
}

/// True when `expected` are all among `seen`.
pub fn all_visible(expected: &[String], seen: &[String]) -> bool {
    expected.iter().all(|value| seen.contains(value))
}

/// Waits until every server shows every value of every name, or `timeout`.
pub async fn wait_visible(
    grouped: &BTreeMap<String, Vec<String>>,
    nameservers: &[SocketAddr],
    resolvers: &[SocketAddr],
    timeout: Duration,
) -> Result<(), DnsError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut servers_by_name: BTreeMap<&str, Vec<SocketAddr>> = BTreeMap::new();
    for fqdn in grouped.keys() {
        let servers = if nameservers.is_empty() {
            authoritative(resolvers, fqdn).await?
        } else {
            nameservers.to_vec()
        };
        servers_by_name.insert(fqdn, servers);
    }
    loop {
        // The first name and server still missing a value, and the query error if one failed.
        let mut missing: Option<(&String, SocketAddr, Option<DnsError>)> = None;
        'names: for (fqdn, expected) in grouped {
            let name = wire::name(fqdn)?;
            for server in &servers_by_name[fqdn.as_str()] {
                let seen = match query(*server, &name, RecordType::TXT, false).await {
                    Ok(answer) => txt_values(&answer, &name),
                    Err(error) => {
                        missing = Some((fqdn, *server, Some(error)));
                        break 'names;
                    }
                };
                if !all_visible(expected, &seen) {
                    missing = Some((fqdn, *server, None));
                    break 'names;
                }
            }
        }
        let Some((fqdn, server, last_error)) = missing else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(DnsError::NotVisible {
                timeout,
                fqdn: fqdn.clone(),
                server,
                last_error: last_error.map(Box::new),
            });
        }
        tokio::time::sleep(DEFAULT_POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expected_value_must_be_seen() {
        let expected = vec!["a".to_string(), "b".to_string()];
        assert!(all_visible(
            &expected,
            &["b".into(), "a".into(), "old".into()]
        ));
        assert!(!all_visible(&expected, &["a".into()]));
        assert!(all_visible(&[], &[]));
    }
}
