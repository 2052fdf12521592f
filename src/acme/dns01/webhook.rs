//! The webhook provider: `POST {url}/present` and `{url}/cleanup` with `{"fqdn","value"}`; any
//! 2xx answer means done.

use async_trait::async_trait;
use http::Method;

use super::http_api::ApiClient;
use super::{DnsApi, DnsError};

pub struct Webhook {
    url: String,
    client: ApiClient,
}

impl Webhook {
    pub fn new(url: String) -> Result<Self, DnsError> {
        Ok(Self {
            url,
            client: ApiClient::new()?,
        })
    }

    async fn call(&self, action: &str, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let body = serde_json::json!({ "fqdn": fqdn, "value": value }).to_string();
        let url = format!("{}/{action}", self.url);
        let response = self
            .client
            .send(
                Method::POST,
                &url,
                &[("content-type", "application/json")],
                body.into_bytes(),
            )
            .await?;
        if (200..300).contains(&response.status) {
            Ok(())
        } else {
            Err(DnsError::answered(
                format!("webhook {action}"),
                response.status,
                None,
            ))
        }
    }
}

#[async_trait]
impl DnsApi for Webhook {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.call("present", fqdn, value).await
    }

    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.call("cleanup", fqdn, value).await
    }
}
