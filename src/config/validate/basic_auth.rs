//! `routes[].basic_auth`: the realm and the users file (htpasswd lines `user:hash` with bcrypt
//! hashes, read at load so the request path does no I/O).

use super::Checker;
use crate::config::model::BasicAuth;
use crate::config::raw::RawBasicAuth;

/// The realm a login prompt shows unless `realm` says otherwise.
pub const DEFAULT_REALM: &str = "restricted";

/// The bcrypt hash prefixes accepted (`htpasswd -B` writes `$2y$`).
const BCRYPT_PREFIXES: &[&str] = &["$2y$", "$2b$", "$2a$"];

impl Checker {
    pub(super) fn basic_auth(&mut self, path: &str, raw: &RawBasicAuth) -> Option<BasicAuth> {
        let errors_before = self.errors.len();
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
        let file_path = format!("{path}.users_file");
        let mut users = Vec::new();
        match std::fs::read_to_string(self.resolve(&raw.users_file)) {
            Ok(text) => match parse_users(&text) {
                Ok(list) if list.is_empty() => {
                    self.at_value(&file_path, "the users file holds no `user:hash` lines");
                }
                Ok(list) => users = list,
                Err(message) => self.at_value(&file_path, message),
            },
            Err(e) => self.at_value(&file_path, format!("cannot read {}: {e}", raw.users_file)),
        }
        (self.errors.len() == errors_before).then(|| BasicAuth {
            realm,
            users,
            forward_authorization: raw.forward_authorization.unwrap_or(true),
        })
    }
}

/// `user:hash` lines; blank lines and lines starting with `#` skipped. Every hash must be bcrypt
/// and every user unique.
pub(super) fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!(
                "line {number} of the users file is not `user:hash`"
            ));
        };
        if user.is_empty() {
            return Err(format!("line {number} of the users file has no user name"));
        }
        if !BCRYPT_PREFIXES.iter().any(|p| hash.starts_with(p)) || hash.len() != 60 {
            return Err(format!(
                "line {number} of the users file: the hash of `{user}` is not bcrypt ($2y$, $2b$ or $2a$, 60 characters); make one with `htpasswd -nB {user}`"
            ));
        }
        if out.iter().any(|(known, _)| known == user) {
            return Err(format!(
                "line {number} of the users file repeats user `{user}`"
            ));
        }
        out.push((user.to_string(), hash.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$05$5mGF0Zo1kpvCbH3UCiKrkeXKSCfZjLi.Vh0HBB6Ot0ZVt9JxjCdym";

    #[test]
    fn users_parse_and_only_bcrypt_is_accepted() {
        let users = parse_users(&format!(
            "# ops\nalice:{HASH}\n\nbob:{}\n",
            HASH.replace("$2y$", "$2b$")
        ))
        .unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].0, "alice");
        assert!(parse_users("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_users("alice:$apr1$x$y\n").is_err());
        assert!(parse_users("no-colon\n").unwrap_err().contains("user:hash"));
        assert!(parse_users(&format!("a:{HASH}\na:{HASH}\n"))
            .unwrap_err()
            .contains("line 2"));
    }
}
