//! Host names as written in `routes[].hosts` and `tls.certificates[].domains`.

use crate::config::model::HostMatch;

/// Parses a host: lowercased; `*.example.com` is a wildcard over `example.com`.
pub(super) fn parse_host(text: &str) -> Result<HostMatch, String> {
    let host = text.to_ascii_lowercase();
    if host.is_empty() {
        return Err("a host must not be empty".into());
    }
    if host == "*" {
        return Err("`*` alone is not a host; leave `hosts` out to match any host".into());
    }
    if let Some(parent) = host.strip_prefix("*.") {
        check_name(text, parent)?;
        return Ok(HostMatch::Wildcard(parent.to_string()));
    }
    check_name(text, &host)?;
    Ok(HostMatch::Exact(host))
}

fn check_name(text: &str, name: &str) -> Result<(), String> {
    if name.contains('*') {
        return Err(format!(
            "invalid host `{text}`: a wildcard is only allowed as the whole first label, as in `*.example.com`"
        ));
    }
    if name.contains(':') {
        return Err(format!(
            "invalid host `{text}`: a host has no port here (routes match any port)"
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!("invalid host `{text}`: empty label"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "invalid host `{text}`: character `{bad}` is not allowed (letters, digits, `-` and `.` only)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_hosts_are_lowercased() {
        assert_eq!(
            parse_host("Chat.Example.COM"),
            Ok(HostMatch::Exact("chat.example.com".into()))
        );
        assert_eq!(
            parse_host("localhost"),
            Ok(HostMatch::Exact("localhost".into()))
        );
    }

    #[test]
    fn wildcards_keep_the_parent() {
        assert_eq!(
            parse_host("*.Example.com"),
            Ok(HostMatch::Wildcard("example.com".into()))
        );
    }

    #[test]
    fn rejects_bad_hosts() {
        let cases = [
            ("", "empty"),
            ("*", "alone"),
            ("a.*.com", "whole first label"),
            ("*.*.com", "whole first label"),
            ("example.com:443", "port"),
            ("a..com", "empty label"),
            (".a.com", "empty label"),
            ("a.com.", "empty label"),
            ("a_b.com", "`_`"),
            ("exämple.com", "`ä`"),
            ("a b.com", "` `"),
        ];
        for (host, expected) in cases {
            let message = parse_host(host).unwrap_err();
            assert!(message.contains(expected), "{host:?}: {message}");
        }
    }
}
