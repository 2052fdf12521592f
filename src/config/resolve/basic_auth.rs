//! `routes[].basic_auth` users files: htpasswd lines `user:hash` with bcrypt hashes, read at load
//! so the request path does no I/O.

use crate::config::draft::DraftBasicAuth;
use crate::config::model::BasicAuth;
use crate::config::report::Report;

/// The bcrypt hash prefixes accepted (`htpasswd -B` writes `$2y$`).
const BCRYPT_PREFIXES: &[&str] = &["$2y$", "$2b$", "$2a$"];

/// The route's `basic_auth` with its users file read; `None` when it cannot be used (reported).
pub(super) fn resolve(draft: DraftBasicAuth, report: &mut Report) -> Option<BasicAuth> {
    let file_path = format!("{}.users_file", draft.at);
    let text = match std::fs::read_to_string(&draft.users_file.path) {
        Ok(text) => text,
        Err(e) => {
            let message = format!("cannot read {}: {e}", draft.users_file.written);
            report.at_value(&file_path, message);
            return None;
        }
    };
    match parse_users(&text) {
        Ok(users) if users.is_empty() => {
            report.at_value(&file_path, "the users file holds no `user:hash` lines");
            None
        }
        Ok(users) => Some(BasicAuth {
            realm: draft.realm,
            users,
            forward_authorization: draft.forward_authorization,
        }),
        Err(message) => {
            report.at_value(&file_path, message);
            None
        }
    }
}

/// `user:hash` lines; blank lines and lines starting with `#` skipped. Every hash must be bcrypt
/// and every user unique.
fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
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
