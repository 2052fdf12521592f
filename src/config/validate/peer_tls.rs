//! `upstreams.NAME.tls`: the server name, verification, a CA bundle, a client certificate and
//! ALPN. The files it names are read by `resolve`.

use super::Checker;
use crate::config::draft::DraftUpstreamTls;
use crate::config::model::UpstreamAlpn;
use crate::config::raw::RawUpstreamTls;
use crate::config::spans::child_key;

/// ALPN names an upstream may be offered.
const ALPN_HTTP1: &str = "http/1.1";
const ALPN_H2: &str = "h2";

impl Checker {
    /// The `tls` of the upstream at `path` (its own path); `None` when it has errors.
    pub(super) fn upstream_tls(
        &mut self,
        path: &str,
        raw: RawUpstreamTls,
    ) -> Option<DraftUpstreamTls> {
        let errors_before = self.error_count();
        if let Some(sni) = &raw.sni {
            if rustls_pki_types::ServerName::try_from(sni.as_str()).is_err() {
                self.at_value(
                    &child_key(path, "sni"),
                    format!("`{sni}` is not a DNS name or IP address"),
                );
            }
        }
        let verify = raw.verify.unwrap_or(true);
        if !verify && raw.ca.is_some() {
            self.at_key(
                &child_key(path, "ca"),
                "`ca` has no effect with `verify: false` (certificates are not checked)",
            );
        }
        let identity = match (&raw.client_cert, &raw.client_key) {
            (Some(cert), Some(key)) => Some((self.named_file(cert), self.named_file(key))),
            (Some(_), None) => {
                self.at_key(
                    &child_key(path, "client_cert"),
                    "`client_cert` needs `client_key`",
                );
                None
            }
            (None, Some(_)) => {
                self.at_key(
                    &child_key(path, "client_key"),
                    "`client_key` needs `client_cert`",
                );
                None
            }
            (None, None) => None,
        };
        let alpn = match &raw.alpn {
            None => UpstreamAlpn::Http1,
            Some(names) => self.alpn(&child_key(path, "alpn"), names),
        };
        (self.error_count() == errors_before).then(|| DraftUpstreamTls {
            at: path.to_string(),
            sni: raw.sni,
            verify,
            ca: raw.ca.as_deref().map(|ca| self.named_file(ca)),
            identity,
            alpn,
        })
    }

    fn alpn(&mut self, path: &str, names: &[String]) -> UpstreamAlpn {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match names.as_slice() {
            [ALPN_HTTP1] => UpstreamAlpn::Http1,
            names if names.contains(&ALPN_H2) => {
                // Requests go to servers over HTTP/1.1 connections (pooled, with WebSocket
                // upgrades); offering h2 would let a server pick a protocol never spoken.
                self.at_value(
                    path,
                    "ferrogate speaks HTTP/1.1 to upstream servers; `h2` cannot be offered: use `[http/1.1]`",
                );
                UpstreamAlpn::Http1
            }
            _ => {
                self.at_value(path, "expected `[http/1.1]`");
                UpstreamAlpn::Http1
            }
        }
    }
}
