//! `routes[].basic_auth`: the realm, the Authorization forwarding switch, and the users file
//! (htpasswd lines `user:hash` with bcrypt hashes, read by `resolve` so the request path does
//! no I/O).

use super::Checker;
use crate::config::draft::DraftBasicAuth;
use crate::config::raw::RawBasicAuth;

/// The realm a login prompt shows unless `realm` says otherwise.
pub const DEFAULT_REALM: &str = "restricted";

impl Checker {
    /// The `basic_auth` at `path`, kept even when it has errors (its file is still read).
    pub(super) fn basic_auth(&mut self, path: &str, raw: &RawBasicAuth) -> DraftBasicAuth {
        let realm = raw.realm.clone().unwrap_or_else(|| DEFAULT_REALM.into());
        let realm_ok = !realm.is_empty()
            && realm
                .chars()
                .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\');
        if !realm_ok {
            self.at_value(
                &format!("{path}.realm"),
                "a realm is printable ASCII without `\"` or `\\`",
            );
        }
        DraftBasicAuth {
            at: path.to_string(),
            realm,
            users_file: self.named_file(&raw.users_file),
            forward_authorization: raw.forward_authorization.unwrap_or(true),
        }
    }
}
