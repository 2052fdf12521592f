//! DNS-01: the provider interface, the records an order needs (a wildcard and its apex share one
//! name, so providers add records and never replace them), CNAME delegation of
//! `_acme-challenge`, and the publish → propagate → (CA validates) → clean up sequence.

mod cloudflare;
mod error;
mod exec;
mod http_api;
mod propagation;
mod regru;
mod rfc2136;
mod webhook;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

pub use error::DnsError;

use crate::config::model::{DnsProvider, DnsProviderKind};

/// How long a DNS query waits for an answer.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// TTL of the TXT records published.
pub const DEFAULT_TXT_TTL: u32 = 60;
/// Longest CNAME chain followed from `_acme-challenge`.
pub const MAX_CNAME_HOPS: usize = 8;

/// One TXT record an order needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// The identifier as the CA names it (`*.example.com` or `example.com`).
    pub identifier: String,
    /// Absolute name, lowercased, with the trailing dot (after following CNAMEs once resolved).
    pub fqdn: String,
    pub value: String,
}

impl TxtRecord {
    /// The record for an identifier: `_acme-challenge.` + the name without `*.`.
    pub fn for_identifier(identifier: &str, value: String) -> Self {
        let base = identifier.strip_prefix("*.").unwrap_or(identifier);
        Self {
            identifier: identifier.to_string(),
            fqdn: format!(
                "_acme-challenge.{}.",
                base.trim_end_matches('.').to_ascii_lowercase()
            ),
            value,
        }
    }
}

/// Records grouped by name: every value a name must carry at once.
pub fn group_by_name(records: &[TxtRecord]) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        let values = grouped.entry(record.fqdn.clone()).or_default();
        if !values.contains(&record.value) {
            values.push(record.value.clone());
        }
    }
    grouped
}

/// A DNS API that can add and remove one TXT value at a name (adding never replaces others).
#[async_trait]
pub trait DnsApi: Send + Sync {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;
    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;
}

/// A configured DNS-01 provider with its propagation check.
pub struct DnsSolver {
    name: String,
    api: Box<dyn DnsApi>,
    /// Servers asked directly for propagation (and CNAMEs); empty = discover the zone's NS.
    nameservers: Vec<SocketAddr>,
    /// Recursive resolvers for CNAME and zone discovery.
    resolvers: Vec<SocketAddr>,
    propagation_timeout: Duration,
}

impl DnsSolver {
    /// Builds the solver for a provider; `resolvers` empty = /etc/resolv.conf.
    pub fn new(provider: &DnsProvider, resolvers: &[SocketAddr]) -> Result<Self, DnsError> {
        Self::build(provider, resolvers).map_err(|source| DnsError::Provider {
            provider: provider.name.clone(),
            fqdn: None,
            source: Box::new(source),
        })
    }

    fn build(provider: &DnsProvider, resolvers: &[SocketAddr]) -> Result<Self, DnsError> {
        let resolvers = if resolvers.is_empty() {
            wire::system_resolvers()
        } else {
            resolvers.to_vec()
        };
        let mut nameservers = provider.nameservers.clone();
        let api: Box<dyn DnsApi> = match &provider.kind {
            DnsProviderKind::Rfc2136 {
                server,
                zone,
                tsig_key_name,
                tsig_algorithm,
                tsig_secret,
            } => {
                if nameservers.is_empty() {
                    nameservers.push(*server);
                }
                Box::new(rfc2136::Rfc2136::new(
                    *server,
                    zone.clone(),
                    tsig_key_name,
                    *tsig_algorithm,
                    tsig_secret.clone(),
                )?)
            }
            DnsProviderKind::Exec { command } => Box::new(exec::Exec::new(command.clone())),
            DnsProviderKind::Webhook { url } => Box::new(webhook::Webhook::new(url.clone())?),
            DnsProviderKind::Cloudflare { api_token, api_url } => Box::new(
                cloudflare::Cloudflare::new(api_token.clone(), api_url.clone())?,
            ),
            DnsProviderKind::Regru {
                username,
                password,
                api_url,
                zone,
            } => Box::new(regru::Regru::new(
                username.clone(),
                password.clone(),
                api_url.clone(),
                zone.clone(),
                resolvers.clone(),
            )?),
        };
        Ok(Self {
            name: provider.name.clone(),
            api,
            nameservers,
            resolvers,
            propagation_timeout: provider.propagation_timeout,
        })
    }

    /// Resolves CNAMEs, publishes every record, and waits until each name shows all its values
    /// on the authoritative servers. On error, returns what was published (to clean up).
    pub async fn publish(
        &self,
        records: &[TxtRecord],
    ) -> Result<Vec<TxtRecord>, (Vec<TxtRecord>, DnsError)> {
        let mut published = Vec::new();
        let mut resolved = Vec::with_capacity(records.len());
        for record in records {
            let lookup = if self.nameservers.is_empty() {
                &self.resolvers
            } else {
                &self.nameservers
            };
            let fqdn = propagation::follow_cname(lookup, &record.fqdn).await;
            if fqdn != record.fqdn {
                tracing::info!(from = %record.fqdn, to = %fqdn, "following the CNAME of the challenge record");
            }
            resolved.push(TxtRecord {
                fqdn,
                ..record.clone()
            });
        }
        for record in &resolved {
            tracing::info!(provider = %self.name, fqdn = %record.fqdn, identifier = %record.identifier, "publishing TXT record");
            if let Err(error) = self.api.present(&record.fqdn, &record.value).await {
                let error = DnsError::Provider {
                    provider: self.name.clone(),
                    fqdn: Some(record.fqdn.clone()),
                    source: Box::new(error),
                };
                return Err((published, error));
            }
            published.push(record.clone());
        }
        let grouped = group_by_name(&resolved);
        let check = propagation::wait_visible(
            &grouped,
            &self.nameservers,
            &self.resolvers,
            self.propagation_timeout,
        )
        .await;
        match check {
            Ok(()) => Ok(published),
            Err(error) => Err((
                published,
                DnsError::Provider {
                    provider: self.name.clone(),
                    fqdn: None,
                    source: Box::new(error),
                },
            )),
        }
    }

    /// Removes the records (errors are logged: a stale TXT record harms nothing).
    pub async fn cleanup(&self, records: &[TxtRecord]) {
        for record in records {
            match self.api.cleanup(&record.fqdn, &record.value).await {
                Ok(()) => {
                    tracing::info!(provider = %self.name, fqdn = %record.fqdn, "removed TXT record")
                }
                Err(error) => {
                    tracing::warn!(provider = %self.name, fqdn = %record.fqdn, %error, "cannot remove TXT record")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_and_apex_share_one_name_with_both_values() {
        let records = [
            TxtRecord::for_identifier("*.Example.com", "w".into()),
            TxtRecord::for_identifier("example.com", "a".into()),
            TxtRecord::for_identifier("www.example.com", "b".into()),
            TxtRecord::for_identifier("example.com", "a".into()),
        ];
        assert_eq!(records[0].fqdn, "_acme-challenge.example.com.");
        let grouped = group_by_name(&records);
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped["_acme-challenge.example.com."], ["w", "a"]);
        assert_eq!(grouped["_acme-challenge.www.example.com."], ["b"]);
    }
}
