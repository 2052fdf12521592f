//! `admin` (listen address, `allow` CIDR list: a non-loopback address needs an explicit list,
//! and the status page history's step), `log` (format and the access log switch) and `otel`
//! (the traces collector's URL, service name, sample ratio and export timeout).

use std::net::SocketAddr;

use serde_yaml::Value;

use super::{listeners, Checker};
use crate::config::duration::parse_duration;
use crate::config::model::{
    Admin, Cidr, Listener, Log, LogFormat, Otel, DEFAULT_ADMIN_LISTEN, DEFAULT_HISTORY_STEP,
    DEFAULT_OTEL_SERVICE_NAME, DEFAULT_OTEL_TIMEOUT, MAX_HISTORY_STEP, MIN_HISTORY_STEP,
    OTLP_TRACES_PATH,
};
use crate::config::raw::{RawAdmin, RawHistory, RawLog, RawLogFormat, RawOtel};
use crate::config::spans::child_index;

impl Checker {
    pub(super) fn admin(&mut self, value: Option<&Value>, listeners: &[Listener]) -> Option<Admin> {
        let raw = self.decode::<RawAdmin>(value, "admin")?;
        let text = raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
        let listen: SocketAddr = match text.parse() {
            Ok(listen) => listen,
            Err(_) => {
                self.at_value("admin.listen", listeners::bad_address(text));
                return None;
            }
        };
        if let Some(other) = listeners.iter().find(|l| l.address == listen) {
            let message = format!(
                "address {listen} is already used by listener `{}`",
                other.name
            );
            self.at_value("admin.listen", message);
        }
        let allow = raw.allow.map(|ranges| self.allow_list(&ranges));
        match &allow {
            None if !listen.ip().is_loopback() => self.at_value(
                "admin.listen",
                format!(
                    "{listen} is not a loopback address: the admin endpoints (metrics, status, reload) \
                     would be open to the network; add `admin.allow: [CIDR, ...]` naming who may connect"
                ),
            ),
            Some(ranges) if ranges.is_empty() => self.at_value(
                "admin.allow",
                "an empty list lets nobody in; name at least one CIDR range (e.g. 10.0.0.0/8)",
            ),
            _ => {}
        }
        let history_step = self.history_step(raw.history);
        Some(Admin {
            listen,
            allow,
            history_step,
        })
    }

    /// `admin.history.step`: a duration from [`MIN_HISTORY_STEP`] to [`MAX_HISTORY_STEP`].
    fn history_step(&mut self, raw: Option<RawHistory>) -> std::time::Duration {
        let Some(text) = raw.and_then(|h| h.step) else {
            return DEFAULT_HISTORY_STEP;
        };
        match parse_duration(&text) {
            Ok(step) if (MIN_HISTORY_STEP..=MAX_HISTORY_STEP).contains(&step) => step,
            Ok(_) => {
                self.at_value(
                    "admin.history.step",
                    "must be from 100ms to 1m (the status page keeps 180 steps: 15 minutes at the default 5s)",
                );
                DEFAULT_HISTORY_STEP
            }
            Err(message) => {
                self.at_value("admin.history.step", message);
                DEFAULT_HISTORY_STEP
            }
        }
    }

    fn allow_list(&mut self, ranges: &[String]) -> Vec<Cidr> {
        let mut parsed = Vec::with_capacity(ranges.len());
        for (index, text) in ranges.iter().enumerate() {
            match Cidr::parse(text) {
                Ok(cidr) => parsed.push(cidr),
                Err(message) => self.at_value(&child_index("admin.allow", index), message),
            }
        }
        parsed
    }

    pub(super) fn log(&mut self, value: Option<&Value>) -> Log {
        let Some(raw) = self.decode::<RawLog>(value, "log") else {
            return Log::default();
        };
        let defaults = Log::default();
        Log {
            format: match raw.format {
                Some(RawLogFormat::Json) => LogFormat::Json,
                Some(RawLogFormat::Text) => LogFormat::Text,
                None => defaults.format,
            },
            access: raw.access.unwrap_or(defaults.access),
        }
    }

    /// `otel`: `endpoint` (required) an http(s) URL, `/v1/traces` when it names no path;
    /// `sample_ratio` from 0 to 1; `service_name` not empty; `timeout` a positive duration.
    pub(super) fn otel(&mut self, value: Option<&Value>) -> Option<Otel> {
        let raw = self.decode::<RawOtel>(value, "otel")?;
        let endpoint = match raw.endpoint.as_deref() {
            None => {
                self.at_value(
                    "otel",
                    "`endpoint` is required: the collector's OTLP/HTTP URL (e.g. http://127.0.0.1:4318)",
                );
                None
            }
            Some(text) => match otlp_endpoint(text) {
                Ok(url) => Some(url),
                Err(message) => {
                    self.at_value("otel.endpoint", message);
                    None
                }
            },
        };
        let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            self.at_value(
                "otel.sample_ratio",
                "must be from 0.0 (none) to 1.0 (every trace started here)",
            );
        }
        let service_name = raw
            .service_name
            .unwrap_or_else(|| DEFAULT_OTEL_SERVICE_NAME.to_string());
        if service_name.trim().is_empty() {
            self.at_value("otel.service_name", "must not be empty");
        }
        let timeout = match raw.timeout.as_deref().map(parse_duration) {
            None => DEFAULT_OTEL_TIMEOUT,
            Some(Ok(timeout)) if !timeout.is_zero() => timeout,
            Some(Ok(_)) => {
                self.at_value("otel.timeout", "must be longer than 0s");
                DEFAULT_OTEL_TIMEOUT
            }
            Some(Err(message)) => {
                self.at_value("otel.timeout", message);
                DEFAULT_OTEL_TIMEOUT
            }
        };
        Some(Otel {
            endpoint: endpoint?,
            service_name,
            sample_ratio,
            timeout,
        })
    }
}

/// The traces URL of an `otel.endpoint`: an `http://` or `https://` URL with a host; one that
/// names no path gets OTLP's `/v1/traces` (as the OpenTelemetry SDKs do with a base endpoint).
fn otlp_endpoint(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "`{text}` must start with http:// or https:// (OTLP over HTTP; gRPC is not spoken)"
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{text}` names no host"));
    }
    let trimmed = text.trim_end_matches('/');
    Ok(match uri.path() {
        "" | "/" if uri.query().is_none() => format!("{trimmed}{OTLP_TRACES_PATH}"),
        _ => text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ok, one_error, MINIMAL};
    use crate::config::model::{LogFormat, DEFAULT_HISTORY_STEP};

    #[test]
    fn admin_defaults_to_loopback_and_keeps_an_allow_list() {
        let config = ok(&(MINIMAL.to_string() + "admin: {}\n"));
        let admin = config.admin.unwrap();
        assert_eq!(admin.listen.to_string(), "127.0.0.1:9901");
        assert!(admin.allow.is_none());
        let config = ok(&(MINIMAL.to_string()
            + "admin: { listen: 0.0.0.0:9901, allow: [10.0.0.0/8, 192.168.1.5] }\n"));
        let allow = config.admin.unwrap().allow.unwrap();
        let shown: Vec<String> = allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.5/32"]);
    }

    #[test]
    fn non_loopback_admin_needs_an_allow_list() {
        one_error(
            &(MINIMAL.to_string() + "admin: { listen: 0.0.0.0:9901 }\n"),
            8,
            "admin.listen",
            "not a loopback address",
        );
        one_error(
            &(MINIMAL.to_string() + "admin: { listen: '[::]:9901', allow: [] }\n"),
            8,
            "admin.allow",
            "lets nobody in",
        );
        one_error(
            &(MINIMAL.to_string()
                + "admin:\n  listen: 0.0.0.0:9901\n  allow: [10.0.0.0/8, 10.0.0.0/40]\n"),
            10,
            "admin.allow[1]",
            "invalid CIDR range `10.0.0.0/40`",
        );
        one_error(
            &(MINIMAL.to_string() + "admin: { listen: 127.0.0.1:9901, alow: [] }\n"),
            8,
            "admin.alow",
            "unknown key",
        );
    }

    #[test]
    fn the_history_step_defaults_to_5s_and_stays_in_range() {
        let config = ok(&(MINIMAL.to_string() + "admin: {}\n"));
        assert_eq!(config.admin.unwrap().history_step, DEFAULT_HISTORY_STEP);
        let config = ok(&(MINIMAL.to_string() + "admin: { history: { step: 250ms } }\n"));
        assert_eq!(
            config.admin.unwrap().history_step,
            std::time::Duration::from_millis(250)
        );
        one_error(
            &(MINIMAL.to_string() + "admin:\n  history: { step: 10ms }\n"),
            9,
            "admin.history.step",
            "must be from 100ms to 1m",
        );
        one_error(
            &(MINIMAL.to_string() + "admin:\n  history: { step: 2h }\n"),
            9,
            "admin.history.step",
            "must be from 100ms to 1m",
        );
        one_error(
            &(MINIMAL.to_string() + "admin:\n  history: { step: soon }\n"),
            9,
            "admin.history.step",
            "soon",
        );
        one_error(
            &(MINIMAL.to_string() + "admin:\n  history: { window: 1h }\n"),
            9,
            "admin.history.window",
            "unknown key",
        );
    }

    #[test]
    fn log_format_and_access_switch() {
        let config = ok(MINIMAL);
        assert_eq!(config.log.format, LogFormat::Text);
        assert!(config.log.access);
        let config = ok(&(MINIMAL.to_string() + "log: { format: json, access: false }\n"));
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(!config.log.access);
        one_error(
            &(MINIMAL.to_string() + "log: { format: xml }\n"),
            8,
            "log.format",
            "unknown variant `xml`",
        );
    }

    #[test]
    fn otel_takes_a_base_or_a_traces_url_and_defaults_the_rest() {
        let config = ok(&(MINIMAL.to_string() + "otel: { endpoint: http://127.0.0.1:4318 }\n"));
        let otel = config.otel.unwrap();
        assert_eq!(otel.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(otel.service_name, "ferrogate");
        assert_eq!(otel.sample_ratio, 1.0);
        assert_eq!(otel.timeout, std::time::Duration::from_secs(10));
        let config = ok(&(MINIMAL.to_string()
            + "otel:\n  endpoint: https://otel.example:4318/custom/traces\n  service_name: edge-1\n  sample_ratio: 0.25\n  timeout: 2s\n"));
        let otel = config.otel.unwrap();
        assert_eq!(otel.endpoint, "https://otel.example:4318/custom/traces");
        assert_eq!(otel.service_name, "edge-1");
        assert_eq!(otel.sample_ratio, 0.25);
        assert_eq!(otel.timeout, std::time::Duration::from_secs(2));
        assert!(ok(MINIMAL).otel.is_none());
    }

    #[test]
    fn otel_errors_name_the_key() {
        one_error(
            &(MINIMAL.to_string() + "otel: { sample_ratio: 0.5 }\n"),
            8,
            "otel",
            "`endpoint` is required",
        );
        one_error(
            &(MINIMAL.to_string() + "otel: { endpoint: grpc://127.0.0.1:4317 }\n"),
            8,
            "otel.endpoint",
            "must start with http:// or https://",
        );
        one_error(
            &(MINIMAL.to_string()
                + "otel:\n  endpoint: http://127.0.0.1:4318\n  sample_ratio: 1.5\n"),
            10,
            "otel.sample_ratio",
            "from 0.0",
        );
        one_error(
            &(MINIMAL.to_string() + "otel:\n  endpoint: http://127.0.0.1:4318\n  timeout: 0s\n"),
            10,
            "otel.timeout",
            "longer than 0s",
        );
        one_error(
            &(MINIMAL.to_string() + "otel: { endpoint: http://127.0.0.1:4318, sampler: all }\n"),
            8,
            "otel.sampler",
            "unknown key",
        );
    }
}
