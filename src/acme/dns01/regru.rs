//! reg.ru's API 2 (`zone/add_txt`, `zone/remove_record`): form posts with the account's
//! username and password; a call succeeds when the answer says `success` at the top level and
//! for the domain.

use std::net::SocketAddr;

use async_trait::async_trait;
use http::Method;
use serde_json::Value;

use super::http_api::{form, ApiClient};
use super::propagation::find_zone;
use super::{DnsApi, DnsError};
use crate::config::model::Secret;

pub struct Regru {
    username: String,
    password: Secret,
    api_url: String,
    zone: Option<String>,
    resolvers: Vec<SocketAddr>,
    client: ApiClient,
}

impl Regru {
    pub fn new(
        username: String,
        password: Secret,
        api_url: String,
        zone: Option<String>,
        resolvers: Vec<SocketAddr>,
    ) -> Result<Self, DnsError> {
        Ok(Self {
            username,
            password,
            api_url,
            zone,
            resolvers,
            client: ApiClient::new()?,
        })
    }

    /// The registered domain holding `fqdn` and the record's name relative to it.
    async fn split(&self, fqdn: &str) -> Result<(String, String), DnsError> {
        let name = fqdn.trim_end_matches('.').to_ascii_lowercase();
        let zone = match &self.zone {
            Some(zone) => zone.clone(),
            None => match find_zone(&self.resolvers, &name, true).await {
                Ok(zone) => zone.trim_end_matches('.').to_string(),
                Err(_) => last_two_labels(&name),
            },
        };
        subdomain_of(&name, &zone)
            .map(|sub| (zone.clone(), sub))
            .ok_or_else(|| DnsError::OutsideZone {
                name: name.clone(),
                zone: zone.clone(),
            })
    }

    async fn call(&self, method: &str, input: Value) -> Result<(), DnsError> {
        let password = self.password.read().map_err(DnsError::Secret)?;
        let input = input.to_string();
        let body = form(&[
            ("username", &self.username),
            ("password", &password),
            ("input_format", "json"),
            ("input_data", &input),
        ]);
        let url = format!("{}/{method}", self.api_url);
        let response = self
            .client
            .send(
                Method::POST,
                &url,
                &[("content-type", "application/x-www-form-urlencoded")],
                body.into_bytes(),
            )
            .await?;
        let answer: Value =
            serde_json::from_slice(&response.body).map_err(|_| DnsError::NotJson {
                api: "reg.ru",
                status: response.status,
            })?;
        check_answer(&answer)
    }
}

/// The last two labels (`a.b.example.com` → `example.com`).
fn last_two_labels(name: &str) -> String {
    let labels: Vec<&str> = name.split('.').collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

/// `_acme-challenge.www.example.com` in `example.com` → `_acme-challenge.www`.
fn subdomain_of(name: &str, zone: &str) -> Option<String> {
    if name == zone {
        return Some("@".into());
    }
    name.strip_suffix(zone)?
        .strip_suffix('.')
        .map(str::to_string)
}

/// reg.ru's error codes for a login, password or source address it does not accept.
const AUTH_ERROR_CODES: &[&str] = &[
    "NO_USERNAME",
    "NO_AUTH",
    "PASSWORD_AUTH_FAILED",
    "RESELLER_AUTH_FAILED",
    "ACCESS_DENIED",
    "ACCESS_DENIED_FROM_IP",
];

/// Success at the top level and for every domain. A domain's error is a refusal of that
/// change; a top-level one is refused credentials, or else says nothing of lasting.
fn check_answer(answer: &Value) -> Result<(), DnsError> {
    if answer["result"] != "success" {
        let code = answer["error_code"].as_str().unwrap_or("no code");
        let detail = format!(
            "{} ({code})",
            answer["error_text"].as_str().unwrap_or("error")
        );
        return Err(if AUTH_ERROR_CODES.contains(&code) {
            DnsError::Auth {
                api: "reg.ru".into(),
                detail,
            }
        } else {
            DnsError::Failed {
                api: "reg.ru",
                detail,
            }
        });
    }
    for domain in answer["answer"]["domains"].as_array().into_iter().flatten() {
        if domain["result"] != "success" {
            return Err(DnsError::Refused {
                api: "reg.ru",
                detail: format!(
                    "{} for {}",
                    domain["error_text"].as_str().unwrap_or("error"),
                    domain["dname"].as_str().unwrap_or("?")
                ),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl DnsApi for Regru {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let (zone, subdomain) = self.split(fqdn).await?;
        let input = serde_json::json!({
            "domains": [{ "dname": zone }],
            "subdomain": subdomain,
            "text": value,
            "output_content_type": "plain",
        });
        self.call("zone/add_txt", input).await
    }

    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let (zone, subdomain) = self.split(fqdn).await?;
        let input = serde_json::json!({
            "domains": [{ "dname": zone }],
            "subdomain": subdomain,
            "content": value,
            "record_type": "TXT",
            "output_content_type": "plain",
        });
        self.call("zone/remove_record", input).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_zone_and_subdomain() {
        assert_eq!(
            last_two_labels("_acme-challenge.www.example.ru"),
            "example.ru"
        );
        assert_eq!(
            subdomain_of("_acme-challenge.www.example.ru", "example.ru").as_deref(),
            Some("_acme-challenge.www")
        );
        assert_eq!(subdomain_of("x.other.ru", "example.ru"), None);
        assert_eq!(subdomain_of("xexample.ru", "example.ru"), None);
    }

    #[test]
    fn answers_need_success_everywhere() {
        let ok = serde_json::json!({"result":"success","answer":{"domains":[{"dname":"a.ru","result":"success"}]}});
        assert!(check_answer(&ok).is_ok());
        let bad = serde_json::json!({"result":"success","answer":{"domains":[{"dname":"a.ru","result":"error","error_text":"no zone"}]}});
        let refused = check_answer(&bad).unwrap_err();
        assert!(refused.to_string().contains("no zone"));
        assert!(!refused.is_transient());
        let top = serde_json::json!({"result":"error","error_code":"PASSWORD_AUTH_FAILED","error_text":"bad password"});
        let auth = check_answer(&top).unwrap_err();
        assert!(auth.to_string().contains("PASSWORD_AUTH_FAILED"));
        assert!(!auth.is_transient());
        let busy = serde_json::json!({"result":"error","error_code":"IP_EXCEEDED_ALLOWED_CONNECTION_RATE","error_text":"too many"});
        assert!(check_answer(&busy).unwrap_err().is_transient());
    }
}
