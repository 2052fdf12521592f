//! `routes[].api_keys`: the digest file (read at load, so the request path does no I/O), the
//! header, and the key sent upstream instead of the client's.

use super::Checker;
use crate::config::model::{ApiKeys, TokenQuota};
use crate::config::raw::RawApiKeys;

/// The header a client's key travels in unless `header` says otherwise.
pub const DEFAULT_API_KEY_HEADER: &str = "authorization";

impl Checker {
    pub(super) fn api_keys(&mut self, path: &str, raw: &RawApiKeys) -> Option<ApiKeys> {
        let errors_before = self.errors.len();
        let file_path = format!("{path}.file");
        let mut digests = Vec::new();
        match std::fs::read_to_string(self.resolve(&raw.file)) {
            Ok(text) => match parse_digests(&text) {
                Ok(list) if list.is_empty() => {
                    self.at_value(&file_path, "the key file holds no key digests");
                }
                Ok(list) => digests = list,
                Err(message) => self.at_value(&file_path, message),
            },
            Err(e) => self.at_value(&file_path, format!("cannot read {}: {e}", raw.file)),
        }
        let header = raw
            .header
            .as_deref()
            .unwrap_or(DEFAULT_API_KEY_HEADER)
            .to_ascii_lowercase();
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            self.at_value(
                &format!("{path}.header"),
                format!("`{header}` is not a header name"),
            );
        }
        let upstream_key = raw.upstream_key_file.as_ref().and_then(|file| {
            let key_path = format!("{path}.upstream_key_file");
            match std::fs::read_to_string(self.resolve(file)) {
                Ok(text) => {
                    let key = text.trim().to_string();
                    let usable = !key.is_empty()
                        && http::HeaderValue::from_str(&format!("Bearer {key}")).is_ok();
                    if usable {
                        Some(key)
                    } else {
                        self.at_value(
                            &key_path,
                            "the upstream key file must hold one key on one line",
                        );
                        None
                    }
                }
                Err(e) => {
                    self.at_value(&key_path, format!("cannot read {file}: {e}"));
                    None
                }
            }
        });
        let quota = raw.quota.as_ref().and_then(|q| {
            let quota_path = format!("{path}.quota");
            if q.tokens == 0 {
                self.at_value(&format!("{quota_path}.tokens"), "must be at least 1");
            }
            match crate::config::duration::parse_duration(&q.per) {
                Ok(per) if !per.is_zero() && q.tokens > 0 => Some(TokenQuota {
                    tokens: q.tokens,
                    per,
                }),
                Ok(per) if per.is_zero() => {
                    self.at_value(&format!("{quota_path}.per"), "must be longer than 0s");
                    None
                }
                Ok(_) => None,
                Err(message) => {
                    self.at_value(&format!("{quota_path}.per"), message);
                    None
                }
            }
        });
        (self.errors.len() == errors_before).then_some(ApiKeys {
            digests,
            header,
            upstream_key,
            quota,
        })
    }
}

/// One lowercase or uppercase hex SHA-256 digest per line; blank lines and `#` comments skipped.
pub(super) fn parse_digests(text: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let digest = parse_hex32(line).ok_or_else(|| {
            format!(
                "line {} of the key file is not a hex SHA-256 digest (64 hex digits; make one with `printf %s \"$KEY\" | sha256sum`)",
                index + 1
            )
        })?;
        out.push(digest);
    }
    Ok(out)
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_with_comments() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let list = parse_digests(&format!(
            "# team a\n{hex}  # test\n\n{}\n",
            hex.to_uppercase()
        ))
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0][0], 0x9f);
        assert_eq!(list[0], list[1]);
        assert!(parse_digests("plaintext-key\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_digests(&format!("{}\n", &hex[..63])).is_err());
    }
}
