//! HTTP Basic authentication for a route (`basic_auth`). Passwords are checked against bcrypt
//! hashes on tokio's blocking pool (bcrypt is deliberately slow and must not stall the proxy's
//! threads); a success is remembered for [`DEFAULT_CACHE_TTL`] as the SHA-256 of the presented
//! credentials per user, compared in constant time, so a browser sending the same header on every
//! request pays the bcrypt cost once. A user not in the file is checked against another user's
//! hash too, so the answer's timing does not tell which names exist.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderMap, HeaderValue};
use parking_lot::Mutex;
use subtle::ConstantTimeEq;

use super::sha256;
use crate::config::model::BasicAuth;

/// How long a verified user:password pair is accepted without bcrypt.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Users remembered at most (one entry per user; the table is cleared when full).
pub const DEFAULT_CACHE_USERS: usize = 4096;

/// One route's compiled Basic authentication.
#[derive(Debug)]
pub struct BasicAuthCheck {
    challenge: HeaderValue,
    users: HashMap<String, String>,
    /// A hash to check unknown users against (same cost as real ones).
    decoy: String,
    forward_authorization: bool,
    /// user → (SHA-256 of the verified credentials, valid until).
    verified: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

/// What a request's Authorization header holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Vec<u8>,
    /// SHA-256 of `user:password` as sent.
    pub digest: [u8; 32],
}

/// Reads `Authorization: Basic base64(user:password)`.
pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let raw = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = raw.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_string();
    Some(Credentials {
        user,
        password: decoded[colon + 1..].to_vec(),
        digest: sha256(&decoded),
    })
}

impl BasicAuthCheck {
    pub fn compile(settings: &BasicAuth) -> Option<Self> {
        let decoy = settings.users.first()?.1.clone();
        Some(Self {
            challenge: HeaderValue::from_str(&format!("Basic realm=\"{}\"", settings.realm))
                .ok()?,
            users: settings.users.iter().cloned().collect(),
            decoy,
            forward_authorization: settings.forward_authorization,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// Whether the backend gets the client's Authorization header.
    pub fn forwards_authorization(&self) -> bool {
        self.forward_authorization
    }

    fn table(&self) -> parking_lot::MutexGuard<'_, HashMap<String, ([u8; 32], Instant)>> {
        self.verified.lock()
    }

    /// Whether `credentials` were verified recently.
    pub fn remembered(&self, credentials: &Credentials, now: Instant) -> bool {
        self.table()
            .get(&credentials.user)
            .is_some_and(|(digest, until)| {
                now < *until && bool::from(digest.ct_eq(&credentials.digest))
            })
    }

    fn remember(&self, credentials: &Credentials, now: Instant) {
        let mut table = self.table();
        if table.len() >= DEFAULT_CACHE_USERS && !table.contains_key(&credentials.user) {
            table.retain(|_, (_, until)| now < *until);
            if table.len() >= DEFAULT_CACHE_USERS {
                table.clear();
            }
        }
        table.insert(
            credentials.user.clone(),
            (credentials.digest, now + DEFAULT_CACHE_TTL),
        );
    }

    /// Checks the request's credentials: from memory when verified recently, otherwise with
    /// bcrypt on the blocking pool.
    pub async fn authorize(&self, headers: &HeaderMap) -> bool {
        let Some(credentials) = credentials(headers) else {
            return false;
        };
        if self.remembered(&credentials, Instant::now()) {
            return true;
        }
        let (hash, known) = match self.users.get(&credentials.user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let password = credentials.password.clone();
        let matched = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if matched && known {
            self.remember(&credentials, Instant::now());
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user_password: &str) -> HeaderMap {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        header(&format!("Basic {encoded}"))
    }

    fn check() -> BasicAuthCheck {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        BasicAuthCheck::compile(&BasicAuth {
            realm: "ops".into(),
            users: vec![("alice".into(), hash)],
            forward_authorization: false,
        })
        .unwrap()
    }

    #[test]
    fn credentials_are_read_from_basic_headers_only() {
        let c = credentials(&basic("alice:pa:ss")).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, b"pa:ss");
        assert_eq!(c.digest, sha256(b"alice:pa:ss"));
        assert!(credentials(&header("Bearer abc")).is_none());
        assert!(credentials(&header("Basic !!!")).is_none());
        assert!(credentials(&basic("no-colon")).is_none());
        assert!(credentials(&HeaderMap::new()).is_none());
    }

    #[tokio::test]
    async fn passwords_are_verified_and_remembered() {
        let check = check();
        assert_eq!(check.challenge(), "Basic realm=\"ops\"");
        assert!(!check.forwards_authorization());
        assert!(!check.authorize(&basic("alice:wrong")).await);
        assert!(!check.authorize(&basic("mallory:s3cret")).await);
        let right = credentials(&basic("alice:s3cret")).unwrap();
        assert!(!check.remembered(&right, Instant::now()));
        assert!(check.authorize(&basic("alice:s3cret")).await);
        assert!(check.remembered(&right, Instant::now()));
        // Another password for the same user is not taken from memory.
        let other = credentials(&basic("alice:s3cret2")).unwrap();
        assert!(!check.remembered(&other, Instant::now()));
        // Memory expires.
        assert!(!check.remembered(&right, Instant::now() + DEFAULT_CACHE_TTL));
    }
}
