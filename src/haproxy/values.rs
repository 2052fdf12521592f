//! HAProxy values in ferrogate's spelling: durations (`10m`, `300s`, a bare number is
//! milliseconds), bind addresses (`*:443`, `:::80`, `ipv6@:443`), log-format header values
//! (`%[src]` → `{client_ip}`), regex escaping, and names fit for routes and certificates.

use std::net::IpAddr;

/// A HAProxy time (`5s`, `10m`, `1h`, `2d`, `500ms`, `100us`, or a bare number of milliseconds)
/// as a ferrogate duration string.
pub fn duration(text: &str) -> Result<String, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a HAProxy time"))?;
    let millis = match unit {
        "" | "ms" => value,
        "us" => value.div_ceil(1000),
        "s" => return Ok(format!("{value}s")),
        "m" => return Ok(format!("{value}m")),
        "h" => return Ok(format!("{value}h")),
        "d" => return Ok(format!("{value}d")),
        _ => return Err(format!("`{text}` has an unknown time unit")),
    };
    if millis == 0 {
        return Err(format!("`{text}` is zero"));
    }
    if millis % 1000 == 0 {
        Ok(format!("{}s", millis / 1000))
    } else {
        Ok(format!("{millis}ms"))
    }
}

/// A bind or server address (`*:443`, `:80`, `0.0.0.0:80`, `:::443`, `ipv6@:443`,
/// `[::1]:8080`) as `IP:PORT` (`[IPv6]:PORT`).
pub fn bind_address(text: &str) -> Result<String, String> {
    let (family, rest) = match text.split_once('@') {
        Some(("ipv4", rest)) => (Some(4), rest),
        Some(("ipv6", rest)) => (Some(6), rest),
        Some((family, _)) => {
            return Err(format!(
                "`{text}`: the {family}@ address family is not a TCP listener ferrogate can have"
            ))
        }
        None if text.starts_with('/') => {
            return Err(format!(
                "`{text}` is a UNIX socket: ferrogate listens on TCP"
            ))
        }
        None => (None, text),
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` has no port"))?;
    let port: u16 = port.parse().map_err(|_| {
        format!("`{text}`: the port `{port}` is not one number (ranges are not translated)")
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host {
        "" | "*" if family == Some(6) => IpAddr::from([0u16; 8]),
        "" | "*" => IpAddr::from([0u8; 4]),
        other => other
            .parse()
            .map_err(|_| format!("`{text}`: `{other}` is not an IP address"))?,
    };
    Ok(match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    })
}

/// A server address: `host:port`, `[v6]:port` or `ipv6@…`; a name stays a name (resolved when
/// ferrogate loads the file).
pub fn server_address(text: &str) -> Result<String, String> {
    if let Ok(address) = bind_address(text) {
        return Ok(address);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` has no port (HAProxy would use the client's)"))?;
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if !valid_host {
        return Err(format!("`{text}` is not a host:port address"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("`{text}`: the port `{port}` is not one number"))?;
    Ok(text.to_string())
}

/// A HAProxy log-format value (`%[src]`, `%ci`, literal text) with ferrogate's placeholders:
/// `{client_ip}`, `{host}`, `{path}`, `{scheme}`, `{request_id}`; literal braces doubled.
pub fn placeholders(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['%', '{', '}']) {
        let (before, tail) = rest.split_at(at);
        out.push_str(before);
        if let Some(after) = tail.strip_prefix('{') {
            out.push_str("{{");
            rest = after;
        } else if let Some(after) = tail.strip_prefix('}') {
            out.push_str("}}");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("%[") {
            let end = after
                .find(']')
                .ok_or_else(|| format!("`{text}`: a `%[` is never closed"))?;
            out.push_str(sample(&after[..end])?);
            rest = &after[end + 1..];
        } else if let Some(after) = tail.strip_prefix("%ci") {
            out.push_str("{client_ip}");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("%ID") {
            out.push_str("{request_id}");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("%%") {
            out.push('%');
            rest = after;
        } else {
            return Err(format!(
                "`{text}`: the log-format variable at `{}` has no ferrogate placeholder",
                &tail[..tail.len().min(6)]
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The placeholder for one `%[…]` sample expression.
fn sample(expression: &str) -> Result<&'static str, String> {
    let normalized: String = expression
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    Ok(match normalized.as_str() {
        "src" => "{client_ip}",
        "req.hdr(host)" | "hdr(host)" | "req.fhdr(host)" | "req.hdr(host,1)" => "{host}",
        "pathq" | "url" => "{path}",
        "unique-id" => "{request_id}",
        "ssl_fc,iif(https,http)" => "{scheme}",
        _ => {
            return Err(format!(
                "the sample `%[{expression}]` has no ferrogate placeholder ({{client_ip}}, {{host}}, {{path}}, {{scheme}}, {{request_id}})"
            ))
        }
    })
}

/// `text` as a regular expression matching it literally.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A name fit for a route, listener or certificate: lowercase letters, digits, `-`, `_`, `.`.
pub fn name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.starts_with(['.', '-']) {
        out.remove(0);
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_their_unit_and_bare_numbers_are_milliseconds() {
        assert_eq!(duration("10m").as_deref(), Ok("10m"));
        assert_eq!(duration("300s").as_deref(), Ok("300s"));
        assert_eq!(duration("1h").as_deref(), Ok("1h"));
        assert_eq!(duration("2d").as_deref(), Ok("2d"));
        assert_eq!(duration("5000").as_deref(), Ok("5s"));
        assert_eq!(duration("1500").as_deref(), Ok("1500ms"));
        assert_eq!(duration("500ms").as_deref(), Ok("500ms"));
        assert_eq!(duration("1500us").as_deref(), Ok("2ms"));
        for bad in ["", "x", "10y", "0", "-5s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bind_addresses_become_socket_addresses() {
        assert_eq!(bind_address("*:443").as_deref(), Ok("0.0.0.0:443"));
        assert_eq!(bind_address(":80").as_deref(), Ok("0.0.0.0:80"));
        assert_eq!(bind_address("0.0.0.0:80").as_deref(), Ok("0.0.0.0:80"));
        assert_eq!(
            bind_address("127.0.0.1:8080").as_deref(),
            Ok("127.0.0.1:8080")
        );
        assert_eq!(bind_address(":::443").as_deref(), Ok("[::]:443"));
        assert_eq!(bind_address("ipv6@:443").as_deref(), Ok("[::]:443"));
        assert_eq!(bind_address("[::1]:80").as_deref(), Ok("[::1]:80"));
        assert_eq!(bind_address("ipv4@*:80").as_deref(), Ok("0.0.0.0:80"));
        for bad in [
            "/run/haproxy.sock",
            "unix@/x",
            "*:80-81",
            "example.com:80",
            "*",
        ] {
            assert!(bind_address(bad).is_err(), "{bad}");
        }
        assert_eq!(
            server_address("owui.internal:3000").as_deref(),
            Ok("owui.internal:3000")
        );
        assert_eq!(
            server_address("10.0.0.11:3000").as_deref(),
            Ok("10.0.0.11:3000")
        );
        assert!(server_address("10.0.0.11").is_err());
        assert!(server_address("<ip>:3000").is_err());
    }

    #[test]
    fn log_format_values_get_placeholders() {
        assert_eq!(placeholders("%[src]").as_deref(), Ok("{client_ip}"));
        assert_eq!(
            placeholders("https://%[req.hdr(host)]%[pathq]").as_deref(),
            Ok("https://{host}{path}")
        );
        assert_eq!(
            placeholders("%ci via {edge}").as_deref(),
            Ok("{client_ip} via {{edge}}")
        );
        assert_eq!(placeholders("100%%").as_deref(), Ok("100%"));
        assert_eq!(placeholders("plain").as_deref(), Ok("plain"));
        assert!(placeholders("%[ssl_c_s_dn]").is_err());
        assert!(placeholders("%[src").is_err());
        assert!(placeholders("%T").is_err());
    }

    #[test]
    fn escapes_and_names() {
        assert_eq!(regex_escape("a.b*c"), "a\\.b\\*c");
        assert_eq!(name("OWUI Chat"), "owui-chat");
        assert_eq!(name(".hidden"), "hidden");
        assert_eq!(name("letsencrypt-backend"), "letsencrypt-backend");
        assert_eq!(name("***"), "x");
    }
}
