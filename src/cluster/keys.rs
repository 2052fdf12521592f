//! Names of everything ferrogate keeps in Redis, under `key_prefix`. The keys of one certificate
//! share a hash tag (`{prefix:cert:NAME}`) so the scripts that touch several of them run on one
//! Redis Cluster slot.

use std::fmt::Write;

/// Builds the keys for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    fn cert_tag(&self, name: &str) -> String {
        format!("{{{}:cert:{name}}}", self.prefix)
    }

    /// Hash with the stored certificate: `chain`, `key`, `meta`, `fence`, `by`.
    pub fn cert(&self, name: &str) -> String {
        self.cert_tag(name)
    }

    /// The issuance lock of one certificate (value: the holder's lock id).
    pub fn cert_lock(&self, name: &str) -> String {
        format!("{}:lock", self.cert_tag(name))
    }

    /// Counter handing out fencing tokens, one per lock acquisition.
    pub fn cert_fence(&self, name: &str) -> String {
        format!("{}:fence", self.cert_tag(name))
    }

    /// Present while the certificate's issuance backs off after a failure (value: failures).
    pub fn cert_backoff(&self, name: &str) -> String {
        format!("{}:backoff", self.cert_tag(name))
    }

    /// Failed attempts counted cluster-wide (outlives the backoff wait; a success deletes it).
    pub fn cert_failures(&self, name: &str) -> String {
        format!("{}:failures", self.cert_tag(name))
    }

    /// ACME account credentials for a directory.
    pub fn account(&self, directory: &str) -> String {
        format!("{}:account:{directory}", self.prefix)
    }

    /// One published HTTP-01 token's key authorization.
    pub fn http01(&self, token: &str) -> String {
        format!("{}:http01:{token}", self.prefix)
    }

    /// A rate-limit bucket: route, the limit's settings (a changed limit starts afresh) and the
    /// client key's digest.
    pub fn rate(&self, route: &str, settings: &str, key: &[u8; 32]) -> String {
        format!("{}:rate:{route}:{settings}:{}", self.prefix, hex(key))
    }

    /// An API key's token count in its quota window.
    pub fn quota(&self, route: &str, settings: &str, key: &[u8; 32]) -> String {
        format!("{}:quota:{route}:{settings}:{}", self.prefix, hex(key))
    }

    /// Sorted set of member ids by last heartbeat (Unix milliseconds).
    pub fn members(&self) -> String {
        format!("{}:members", self.prefix)
    }

    /// One member's description (JSON), expiring when its heartbeats stop.
    pub fn member(&self, id: &str) -> String {
        format!("{}:member:{id}", self.prefix)
    }
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: the first `{...}` if non-empty, else all of it.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{') {
            if let Some(len) = key[open + 1..].find('}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    #[test]
    fn one_certificates_keys_share_a_slot() {
        let keys = Keys::new("edge");
        let tags = [
            keys.cert("web"),
            keys.cert_lock("web"),
            keys.cert_fence("web"),
            keys.cert_backoff("web"),
            keys.cert_failures("web"),
        ];
        for key in &tags {
            assert_eq!(hash_tag(key), "edge:cert:web", "{key}");
        }
        assert_ne!(hash_tag(&keys.cert("api")), hash_tag(&keys.cert("web")));
        assert_eq!(keys.cert_lock("web"), "{edge:cert:web}:lock");
    }

    #[test]
    fn counters_are_per_route_settings_and_key() {
        let keys = Keys::new("p");
        let digest = [0xab; 32];
        let a = keys.rate("api", "5/1", &digest);
        assert!(a.starts_with("p:rate:api:5/1:abab"));
        assert_eq!(a.len(), "p:rate:api:5/1:".len() + 64);
        assert_ne!(a, keys.rate("api", "6/1", &digest));
        assert_ne!(keys.quota("api", "5/1", &digest), a);
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
