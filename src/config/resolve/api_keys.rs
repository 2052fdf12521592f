//! `routes[].api_keys` files: the key digests (read at load, so the request path does no I/O)
//! and the key sent upstream instead of the client's.

use crate::config::draft::DraftApiKeys;
use crate::config::model::ApiKeys;
use crate::config::report::Report;

/// The route's `api_keys` with its files read; `None` when one cannot be used (reported).
pub(super) fn resolve(draft: DraftApiKeys, report: &mut Report) -> Option<ApiKeys> {
    let errors_before = report.error_count();
    let file_path = format!("{}.file", draft.at);
    let mut digests = Vec::new();
    match std::fs::read_to_string(&draft.file.path) {
        Ok(text) => match parse_digests(&text) {
            Ok(list) if list.is_empty() => {
                report.at_value(&file_path, "the key file holds no key digests");
            }
            Ok(list) => digests = list,
            Err(message) => report.at_value(&file_path, message),
        },
        Err(e) => report.at_value(
            &file_path,
            format!("cannot read {}: {e}", draft.file.written),
        ),
    }
    let upstream_key = draft.upstream_key_file.as_ref().and_then(|file| {
        let key_path = format!("{}.upstream_key_file", draft.at);
        match std::fs::read_to_string(&file.path) {
            Ok(text) => {
                let key = text.trim().to_string();
                let usable = !key.is_empty()
                    && http::HeaderValue::from_str(&format!("Bearer {key}")).is_ok();
                if usable {
                    Some(key)
                } else {
                    report.at_value(
                        &key_path,
                        "the upstream key file must hold one key on one line",
                    );
                    None
                }
            }
            Err(e) => {
                report.at_value(&key_path, format!("cannot read {}: {e}", file.written));
                None
            }
        }
    });
    (report.error_count() == errors_before).then_some(ApiKeys {
        digests,
        header: draft.header,
        upstream_key,
        quota: draft.quota,
    })
}

/// One lowercase or uppercase hex SHA-256 digest per line; blank lines and `#` comments skipped.
fn parse_digests(text: &str) -> Result<Vec<[u8; 32]>, String> {
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
