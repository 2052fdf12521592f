//! `ferrogate certs`: one block per configured certificate with its names, source, issuer,
//! expiry, next renewal and last error, read from the configuration and `state_dir` (works
//! whether or not the daemon runs).

use std::fmt::Write as _;

use super::schedule::renewal_time;
use super::storage::{self, Stored};
use crate::config::model::{Challenge, Config};

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

/// The report for every certificate of `config`.
pub fn render(config: &Config) -> String {
    let mut out = String::new();
    for cert in &config.tls.certificates {
        let _ = writeln!(out, "{}", cert.name);
        let _ = writeln!(out, "  names:        {}", cert.dns_names.join(", "));
        let _ = writeln!(out, "  source:       file {}", cert.cert_path.display());
        let issuer = leaf_issuer(&cert.key.cert).unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "  issuer:       {issuer}");
        let _ = writeln!(out, "  not after:    {}", format_time(cert.not_after));
        let _ = writeln!(out, "  next renewal: - (renewed outside ferrogate)");
        let _ = writeln!(out, "  last error:   -");
    }
    for cert in &config.tls.acme {
        let challenge = match &cert.challenge {
            Challenge::Http01 => "http-01".to_string(),
            Challenge::Dns01 { provider } => format!("dns-01 via {provider}"),
        };
        let status = storage::load_status(&config.state_dir, &cert.name);
        let _ = writeln!(out, "{}", cert.name);
        let _ = writeln!(out, "  names:        {}", cert.domains.join(", "));
        let _ = writeln!(
            out,
            "  source:       acme {} ({challenge})",
            config.acme.directory
        );
        match storage::load(&config.state_dir, &cert.name) {
            Stored::Found(issued) => {
                let _ = writeln!(out, "  issuer:       {}", issued.meta.issuer);
                let _ = writeln!(
                    out,
                    "  not after:    {}",
                    format_time(issued.meta.not_after)
                );
                let planned = status
                    .as_ref()
                    .and_then(|s| s.next_attempt)
                    .unwrap_or_else(|| {
                        renewal_time(issued.meta.not_before, issued.meta.not_after, 0)
                    });
                let _ = writeln!(out, "  next renewal: {}", format_time(planned));
            }
            Stored::Missing => {
                let _ = writeln!(
                    out,
                    "  issuer:       - (not issued yet; a self-signed placeholder is served)"
                );
                let _ = writeln!(out, "  not after:    -");
                let next = status.as_ref().and_then(|s| s.next_attempt);
                let _ = writeln!(
                    out,
                    "  next renewal: {}",
                    next.map_or("as soon as the daemon runs".into(), format_time)
                );
            }
            Stored::Corrupt(error) => {
                let _ = writeln!(
                    out,
                    "  issuer:       - (stored files unusable: {error}; will be issued again)"
                );
                let _ = writeln!(out, "  not after:    -");
                let _ = writeln!(out, "  next renewal: as soon as the daemon runs");
            }
        }
        let last_error = status.as_ref().and_then(|s| s.last_error.clone());
        let _ = writeln!(
            out,
            "  last error:   {}",
            last_error.as_deref().unwrap_or("-")
        );
        if let Some(status) = &status {
            let _ = writeln!(
                out,
                "  attempts:     {} succeeded, {} failed",
                status.attempts_succeeded, status.attempts_failed
            );
        }
    }
    if out.is_empty() {
        out.push_str("no certificates configured\n");
    }
    out
}

fn leaf_issuer(chain: &[rustls_pki_types::CertificateDer<'_>]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    Some(parsed.issuer().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
