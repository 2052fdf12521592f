//! Cloudflare's API v4 with a scoped API token: find the zone id by name (walking up from the
//! record's name), add a TXT record, and on cleanup delete the records with exactly that value.

use async_trait::async_trait;
use http::Method;
use serde_json::Value;

use super::http_api::{form_encode, ApiClient};
use super::{DnsApi, DnsError};
use crate::config::model::Secret;

/// TTL Cloudflare gets for challenge records (its minimum for non-enterprise zones).
pub const DEFAULT_CLOUDFLARE_TTL: u32 = 120;

pub struct Cloudflare {
    token: Secret,
    api_url: String,
    client: ApiClient,
}

impl Cloudflare {
    pub fn new(token: Secret, api_url: String) -> Result<Self, DnsError> {
        Ok(Self {
            token,
            api_url,
            client: ApiClient::new()?,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, DnsError> {
        let token = self.token.read().map_err(DnsError::Secret)?;
        let authorization = format!("Bearer {token}");
        let url = format!("{}{path}", self.api_url);
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let response = self
            .client
            .send(
                method,
                &url,
                &[
                    ("authorization", &authorization),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await?;
        let parsed: Value =
            serde_json::from_slice(&response.body).map_err(|_| DnsError::NotJson {
                api: "cloudflare",
                status: response.status,
            })?;
        if response.status >= 300 || parsed["success"] != Value::Bool(true) {
            return Err(DnsError::answered(
                "cloudflare",
                response.status,
                Some(parsed["errors"].to_string()),
            ));
        }
        Ok(parsed)
    }

    /// The id of the most specific zone holding `fqdn`.
    async fn zone_id(&self, fqdn: &str) -> Result<String, DnsError> {
        let name = fqdn.trim_end_matches('.');
        let labels: Vec<&str> = name.split('.').collect();
        for start in 0..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            let answer = self
                .call(
                    Method::GET,
                    &format!("/zones?name={}", form_encode(&candidate)),
                    None,
                )
                .await?;
            if let Some(id) = answer["result"][0]["id"].as_str() {
                return Ok(id.to_string());
            }
        }
        Err(DnsError::NoZone {
            api: "Cloudflare",
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl DnsApi for Cloudflare {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_id(fqdn).await?;
        let record = serde_json::json!({
            "type": "TXT",
            "name": fqdn.trim_end_matches('.'),
            "content": value,
            "ttl": DEFAULT_CLOUDFLARE_TTL,
        });
        self.call(
            Method::POST,
            &format!("/zones/{zone}/dns_records"),
            Some(record),
        )
        .await
        .map(|_| ())
    }

    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let zone = self.zone_id(fqdn).await?;
        let query = format!(
            "/zones/{zone}/dns_records?type=TXT&name={}&content={}",
            form_encode(fqdn.trim_end_matches('.')),
            form_encode(value)
        );
        let found = self.call(Method::GET, &query, None).await?;
        let ids: Vec<String> = found["result"]
            .as_array()
            .map(|records| {
                records
                    .iter()
                    .filter(|r| r["content"].as_str() == Some(value))
                    .filter_map(|r| r["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            self.call(
                Method::DELETE,
                &format!("/zones/{zone}/dns_records/{id}"),
                None,
            )
            .await?;
        }
        Ok(())
    }
}
