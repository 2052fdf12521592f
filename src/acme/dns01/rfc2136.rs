//! RFC 2136 dynamic updates signed with TSIG (bind9, PowerDNS, Knot): add one TXT value (never
//! replacing the others at the name) and delete exactly that value afterwards.

use std::net::SocketAddr;

use async_trait::async_trait;
use base64::Engine;
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm as HickoryTsig;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{update_message, Message, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordSet, RecordType};

use super::propagation::find_zone;
use super::wire::{self, exchange};
use super::{DnsApi, DnsError, DEFAULT_TXT_TTL};
use crate::config::model::{Secret, TsigAlgorithm};

/// Allowed clock difference for TSIG, seconds.
pub const DEFAULT_TSIG_FUDGE: u16 = 300;

/// A primary server accepting signed updates.
pub struct Rfc2136 {
    server: SocketAddr,
    zone: Option<String>,
    key_name: Name,
    algorithm: HickoryTsig,
    secret: Secret,
}

impl Rfc2136 {
    pub fn new(
        server: SocketAddr,
        zone: Option<String>,
        key_name: &str,
        algorithm: TsigAlgorithm,
        secret: Secret,
    ) -> Result<Self, DnsError> {
        let algorithm = match algorithm {
            TsigAlgorithm::HmacSha256 => HickoryTsig::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryTsig::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryTsig::HmacSha512,
        };
        Ok(Self {
            server,
            zone,
            key_name: wire::name(key_name)?,
            algorithm,
            secret,
        })
    }

    fn signer(&self) -> Result<TSigner, DnsError> {
        let encoded = self.secret.read().map_err(DnsError::Secret)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|_| DnsError::TsigNotBase64)?;
        TSigner::new(
            key,
            self.algorithm.clone(),
            self.key_name.clone(),
            DEFAULT_TSIG_FUDGE,
        )
        .map_err(DnsError::TsigKey)
    }

    async fn zone_of(&self, fqdn: &Name) -> Result<Name, DnsError> {
        let zone = match &self.zone {
            Some(zone) => zone.clone(),
            None => find_zone(&[self.server], &fqdn.to_string(), false).await?,
        };
        let zone = wire::name(&zone)?;
        if !zone.zone_of(fqdn) {
            return Err(DnsError::OutsideZone {
                name: fqdn.to_string(),
                zone: zone.to_string(),
            });
        }
        Ok(zone)
    }

    async fn send(&self, mut message: Message, action: &'static str) -> Result<(), DnsError> {
        let signer = self.signer()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        message.finalize(&signer, now).map_err(DnsError::Signing)?;
        let id = message.id();
        let bytes = message.to_vec().map_err(|source| DnsError::Encode {
            what: "encode update",
            source,
        })?;
        let answer = exchange(self.server, &bytes, id).await?;
        match answer.response_code() {
            ResponseCode::NoError => Ok(()),
            code => Err(DnsError::UpdateRefused {
                server: self.server,
                action,
                code,
            }),
        }
    }

    fn rrset(name: &Name, value: &str) -> RecordSet {
        let mut rrset = RecordSet::with_ttl(name.clone(), RecordType::TXT, DEFAULT_TXT_TTL);
        rrset.add_rdata(RData::TXT(TXT::new(vec![value.to_string()])));
        rrset
    }
}

#[async_trait]
impl DnsApi for Rfc2136 {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = wire::name(fqdn)?;
        let zone = self.zone_of(&name).await?;
        let message = update_message::append(Self::rrset(&name, value), zone, false, false);
        self.send(message, "add the TXT record").await
    }

    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = wire::name(fqdn)?;
        let zone = self.zone_of(&name).await?;
        let message = update_message::delete_by_rdata(Self::rrset(&name, value), zone, false);
        self.send(message, "delete the TXT record").await
    }
}
