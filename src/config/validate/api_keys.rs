//! `routes[].api_keys`: the header, the token quota, and which files hold the key digests and the
//! key sent upstream instead of the client's (read by `resolve`, so the request path does no I/O).

use super::Checker;
use crate::config::draft::DraftApiKeys;
use crate::config::model::TokenQuota;
use crate::config::raw::RawApiKeys;

/// The header a client's key travels in unless `header` says otherwise.
pub const DEFAULT_API_KEY_HEADER: &str = "authorization";

impl Checker {
    /// The `api_keys` at `path`, kept even when it has errors (its files are still read).
    pub(super) fn api_keys(&mut self, path: &str, raw: &RawApiKeys) -> DraftApiKeys {
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
        DraftApiKeys {
            at: path.to_string(),
            file: self.named_file(&raw.file),
            header,
            upstream_key_file: raw.upstream_key_file.as_deref().map(|f| self.named_file(f)),
            quota,
        }
    }
}
