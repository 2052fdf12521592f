//! `acme`: the directory, account details, DNS-01 providers (each key checked against its `type`)
//! and the cross-checks between ACME certificates and this section.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde_yaml::Value;

use super::Checker;
use crate::config::draft::{CheckedFileKind, DraftTls};
use crate::config::duration::parse_duration;
use crate::config::model::{
    Acme, Challenge, DnsProvider, DnsProviderKind, Eab, Listener, Secret, TsigAlgorithm,
    CLOUDFLARE_API_URL, DEFAULT_PROPAGATION_TIMEOUT, LETSENCRYPT_DIRECTORY,
    LETSENCRYPT_STAGING_DIRECTORY, LISTENER_HTTP, REGRU_API_URL,
};
use crate::config::raw::{RawAcme, RawDnsProvider, RawDnsProviderType};

/// Keys each provider type accepts besides `type`, `nameservers` and `propagation_timeout`.
fn keys_of(kind: RawDnsProviderType) -> &'static [&'static str] {
    match kind {
        RawDnsProviderType::Rfc2136 => &[
            "server",
            "zone",
            "tsig_key_name",
            "tsig_algorithm",
            "tsig_secret_file",
            "tsig_secret_env",
        ],
        RawDnsProviderType::Cloudflare => &["api_token_file", "api_token_env", "api_url"],
        RawDnsProviderType::Regru => &[
            "username",
            "password_file",
            "password_env",
            "api_url",
            "zone",
        ],
        RawDnsProviderType::Exec => &["command"],
        RawDnsProviderType::Webhook => &["url"],
    }
}

fn type_name(kind: RawDnsProviderType) -> &'static str {
    match kind {
        RawDnsProviderType::Rfc2136 => "rfc2136",
        RawDnsProviderType::Cloudflare => "cloudflare",
        RawDnsProviderType::Regru => "regru",
        RawDnsProviderType::Exec => "exec",
        RawDnsProviderType::Webhook => "webhook",
    }
}

/// Validates the `acme` section (defaults when absent). Also returns every provider name
/// declared, valid or not, so certificates naming an invalid one get no second error.
pub(super) fn check(checker: &mut Checker, value: Option<&Value>) -> (Acme, BTreeSet<String>) {
    let mut acme = Acme::default();
    let Some(raw) = checker.decode::<RawAcme>(value, "acme") else {
        return (acme, BTreeSet::new());
    };
    let declared: BTreeSet<String> = raw.dns_providers.keys().cloned().collect();
    if let Some(directory) = raw.directory {
        match directory_url(&directory) {
            Ok(url) => acme.directory = url,
            Err(message) => checker.at_value("acme.directory", message),
        }
    }
    if let Some(email) = raw.email {
        if email.contains('@') && !email.contains(char::is_whitespace) && !email.contains(',') {
            acme.email = Some(email);
        } else {
            checker.at_value("acme.email", format!("`{email}` is not an email address"));
        }
    }
    if let Some(ca_root) = raw.ca_root {
        let path = checker.file_path(&ca_root);
        checker.check_file("acme.ca_root", path.clone(), CheckedFileKind::AcmeCaRoot);
        acme.ca_root = Some(path);
    }
    if let Some(eab) = raw.eab {
        if eab.kid.is_empty() {
            checker.at_value("acme.eab.kid", "must not be empty");
        }
        let secret = secret(
            checker,
            "acme.eab",
            "hmac_key",
            eab.hmac_key_file,
            eab.hmac_key_env,
        );
        if let Some(hmac_key) = secret {
            acme.eab = Some(Eab {
                kid: eab.kid,
                hmac_key,
            });
        }
    }
    if let Some(resolvers) = raw.dns_resolvers {
        acme.dns_resolvers = addresses(checker, "acme.dns_resolvers", &resolvers);
    }
    acme.retry_min = duration(checker, "acme.retry_min", raw.retry_min, acme.retry_min);
    acme.retry_max = duration(checker, "acme.retry_max", raw.retry_max, acme.retry_max);
    if acme.retry_max < acme.retry_min {
        checker.at_value("acme.retry_max", "must not be shorter than `retry_min`");
    }
    let mut providers = BTreeMap::new();
    for (name, raw) in raw.dns_providers {
        let path = format!("acme.dns_providers.{name}");
        if let Some(provider) = check_provider(checker, &path, &name, raw) {
            providers.insert(name, provider);
        }
    }
    acme.dns_providers = providers;
    (acme, declared)
}

/// Cross-checks ACME certificates against the `acme` section and the listeners.
pub(super) fn check_certificates(
    checker: &mut Checker,
    tls: &DraftTls,
    declared: &BTreeSet<String>,
    acme_section_present: bool,
    listeners: &[Listener],
) {
    for cert in &tls.acme {
        let path = format!("tls.certificates[{}]", cert.index);
        match &cert.challenge {
            Challenge::Http01 => {
                if !listeners.iter().any(|l| l.name == LISTENER_HTTP) {
                    checker.at_value(
                        &format!("{path}.acme.challenge"),
                        "HTTP-01 needs `listeners.http` (port 80) to answer the CA",
                    );
                }
            }
            Challenge::Dns01 { provider } => {
                if !declared.contains(provider) {
                    let message = if acme_section_present {
                        format!("no DNS provider `{provider}` in `acme.dns_providers`")
                    } else {
                        format!("no DNS provider `{provider}`: add it under `acme.dns_providers`")
                    };
                    checker.at_value(&format!("{path}.acme.dns_provider"), message);
                }
            }
        }
    }
}

/// `letsencrypt`, `letsencrypt-staging` or an https URL.
fn directory_url(text: &str) -> Result<String, String> {
    match text {
        "letsencrypt" => Ok(LETSENCRYPT_DIRECTORY.into()),
        "letsencrypt-staging" => Ok(LETSENCRYPT_STAGING_DIRECTORY.into()),
        url => https_url(url).map_err(|why| {
            format!("`{url}` {why}; use `letsencrypt`, `letsencrypt-staging` or an https:// URL")
        }),
    }
}

/// An absolute https URL with a host.
fn https_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text.parse().map_err(|_| "is not a URL".to_string())?;
    if uri.scheme_str() != Some("https") {
        return Err("is not an https URL".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(text.to_string())
}

/// An http(s) URL (provider APIs; plain http is for local stand-ins).
fn http_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("`{text}` is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
        return Err(format!("`{text}` is not an http(s) URL with a host"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn duration(checker: &mut Checker, path: &str, raw: Option<String>, default: Duration) -> Duration {
    let Some(text) = raw else {
        return default;
    };
    match parse_duration(&text) {
        Ok(duration) if duration.is_zero() => {
            checker.at_value(path, "must be longer than zero");
            default
        }
        Ok(duration) => duration,
        Err(message) => {
            checker.at_value(path, message);
            default
        }
    }
}

fn addresses(checker: &mut Checker, path: &str, list: &[String]) -> Vec<SocketAddr> {
    let mut parsed = Vec::new();
    for (index, text) in list.iter().enumerate() {
        match text.parse::<SocketAddr>() {
            Ok(address) => parsed.push(address),
            Err(_) => checker.at_value(
                &format!("{path}[{index}]"),
                format!("invalid address `{text}`: expected ip:port such as 127.0.0.1:53"),
            ),
        }
    }
    parsed
}

/// A secret given as `{base}_file` or `{base}_env` (exactly one); a file is checked for being
/// readable and not blank once validation is done.
pub(super) fn secret(
    checker: &mut Checker,
    path: &str,
    base: &str,
    file: Option<String>,
    env: Option<String>,
) -> Option<Secret> {
    match (file, env) {
        (Some(_), Some(_)) => {
            checker.at_key(
                &format!("{path}.{base}_env"),
                format!("give either `{base}_file` or `{base}_env`, not both"),
            );
            None
        }
        (Some(file), None) => {
            let resolved = checker.file_path(&file);
            let at = format!("{path}.{base}_file");
            checker.check_file(&at, resolved.clone(), CheckedFileKind::Secret);
            Some(Secret::File(resolved))
        }
        (None, Some(env)) if env.is_empty() => {
            checker.at_value(&format!("{path}.{base}_env"), "must not be empty");
            None
        }
        (None, Some(env)) => Some(Secret::Env(env)),
        (None, None) => {
            checker.at_value(path, format!("needs `{base}_file` or `{base}_env`"));
            None
        }
    }
}

/// The value of a key the provider type requires.
fn required(checker: &mut Checker, path: &str, key: &str, value: Option<String>) -> Option<String> {
    match value {
        Some(value) if !value.is_empty() => Some(value),
        Some(_) => {
            checker.at_value(&format!("{path}.{key}"), "must not be empty");
            None
        }
        None => {
            checker.at_value(path, format!("missing key `{key}`"));
            None
        }
    }
}

fn check_provider(
    checker: &mut Checker,
    path: &str,
    name: &str,
    raw: RawDnsProvider,
) -> Option<DnsProvider> {
    let kind = raw.kind;
    let allowed = keys_of(kind);
    let given: [(&str, bool); 15] = [
        ("server", raw.server.is_some()),
        ("zone", raw.zone.is_some()),
        ("tsig_key_name", raw.tsig_key_name.is_some()),
        ("tsig_algorithm", raw.tsig_algorithm.is_some()),
        ("tsig_secret_file", raw.tsig_secret_file.is_some()),
        ("tsig_secret_env", raw.tsig_secret_env.is_some()),
        ("username", raw.username.is_some()),
        ("password_file", raw.password_file.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("api_token_file", raw.api_token_file.is_some()),
        ("api_token_env", raw.api_token_env.is_some()),
        ("api_url", raw.api_url.is_some()),
        ("command", raw.command.is_some()),
        ("url", raw.url.is_some()),
        ("type", true),
    ];
    let mut valid = true;
    for (key, present) in given {
        if present && key != "type" && !allowed.contains(&key) {
            let message = format!(
                "key `{key}` does not apply to a `{}` provider",
                type_name(kind)
            );
            checker.at_key(&format!("{path}.{key}"), message);
            valid = false;
        }
    }
    let nameservers = match &raw.nameservers {
        Some(list) => addresses(checker, &format!("{path}.nameservers"), list),
        None => Vec::new(),
    };
    let propagation_timeout = duration(
        checker,
        &format!("{path}.propagation_timeout"),
        raw.propagation_timeout.clone(),
        DEFAULT_PROPAGATION_TIMEOUT,
    );
    let kind = match kind {
        RawDnsProviderType::Rfc2136 => rfc2136(checker, path, raw)?,
        RawDnsProviderType::Cloudflare => DnsProviderKind::Cloudflare {
            api_token: secret(
                checker,
                path,
                "api_token",
                raw.api_token_file,
                raw.api_token_env,
            )?,
            api_url: api_url(checker, path, raw.api_url, CLOUDFLARE_API_URL)?,
        },
        RawDnsProviderType::Regru => {
            let username = required(checker, path, "username", raw.username);
            let password = secret(
                checker,
                path,
                "password",
                raw.password_file,
                raw.password_env,
            );
            let zone = zone(checker, path, raw.zone);
            let api_url = api_url(checker, path, raw.api_url, REGRU_API_URL);
            DnsProviderKind::Regru {
                username: username?,
                password: password?,
                api_url: api_url?,
                zone: zone?,
            }
        }
        RawDnsProviderType::Exec => {
            let command = required(checker, path, "command", raw.command)?;
            DnsProviderKind::Exec {
                command: checker.file_path(&command),
            }
        }
        RawDnsProviderType::Webhook => {
            let url = required(checker, path, "url", raw.url)?;
            match http_url(&url) {
                Ok(url) => DnsProviderKind::Webhook { url },
                Err(message) => {
                    checker.at_value(&format!("{path}.url"), message);
                    return None;
                }
            }
        }
    };
    valid.then(|| DnsProvider {
        name: name.to_string(),
        kind,
        nameservers,
        propagation_timeout,
    })
}

fn rfc2136(checker: &mut Checker, path: &str, raw: RawDnsProvider) -> Option<DnsProviderKind> {
    let server = required(checker, path, "server", raw.server).and_then(|text| {
        let parsed = text.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            checker.at_value(
                &format!("{path}.server"),
                format!("invalid address `{text}`: expected ip:port such as 10.0.0.53:53"),
            );
        }
        parsed
    });
    let key_name = required(checker, path, "tsig_key_name", raw.tsig_key_name);
    let algorithm = match raw.tsig_algorithm.as_deref() {
        None | Some("hmac-sha256") => Some(TsigAlgorithm::HmacSha256),
        Some("hmac-sha384") => Some(TsigAlgorithm::HmacSha384),
        Some("hmac-sha512") => Some(TsigAlgorithm::HmacSha512),
        Some(other) => {
            checker.at_value(
                &format!("{path}.tsig_algorithm"),
                format!("unsupported TSIG algorithm `{other}`: use hmac-sha256, hmac-sha384 or hmac-sha512"),
            );
            None
        }
    };
    let secret = secret(
        checker,
        path,
        "tsig_secret",
        raw.tsig_secret_file,
        raw.tsig_secret_env,
    );
    let zone = zone(checker, path, raw.zone);
    Some(DnsProviderKind::Rfc2136 {
        server: server?,
        zone: zone?,
        tsig_key_name: key_name?,
        tsig_algorithm: algorithm?,
        tsig_secret: secret?,
    })
}

/// An optional zone name: `Some(None)` when absent, `None` when invalid.
fn zone(checker: &mut Checker, path: &str, raw: Option<String>) -> Option<Option<String>> {
    let Some(zone) = raw else {
        return Some(None);
    };
    let trimmed = zone.trim_end_matches('.').to_ascii_lowercase();
    match super::hosts::parse_host(&trimmed) {
        Ok(crate::config::model::HostMatch::Exact(name)) => Some(Some(name)),
        _ => {
            checker.at_value(
                &format!("{path}.zone"),
                format!("`{zone}` is not a zone name"),
            );
            None
        }
    }
}

fn api_url(
    checker: &mut Checker,
    path: &str,
    raw: Option<String>,
    default: &str,
) -> Option<String> {
    match raw {
        None => Some(default.to_string()),
        Some(url) => match http_url(&url) {
            Ok(url) => Some(url),
            Err(message) => {
                checker.at_value(&format!("{path}.api_url"), message);
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_and_urls() {
        assert_eq!(
            directory_url("letsencrypt").as_deref(),
            Ok(LETSENCRYPT_DIRECTORY)
        );
        assert_eq!(
            directory_url("letsencrypt-staging").as_deref(),
            Ok(LETSENCRYPT_STAGING_DIRECTORY)
        );
        assert!(directory_url("https://127.0.0.1:14000/dir").is_ok());
        assert!(directory_url("http://127.0.0.1/dir")
            .unwrap_err()
            .contains("not an https URL"));
        assert!(directory_url("lets-encrypt")
            .unwrap_err()
            .contains("use `letsencrypt`"));
    }
}
