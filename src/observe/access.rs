//! The access log: one event per request on the tracing target `access` (so `log.access: false`
//! or `FERROGATE_LOG=access=off` turns it off), with the route, server, status, bytes, total and
//! upstream durations and the request id. In JSON mode each becomes one object per line.

use std::net::IpAddr;
use std::time::Duration;

/// The tracing target of access lines.
pub const ACCESS_TARGET: &str = "access";

/// Everything an access line says about one request.
#[derive(Debug)]
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub listener: &'a str,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    /// The path only: queries may carry secrets.
    pub path: &'a str,
    /// 0 when no response was sent (the client went away first).
    pub status: u16,
    pub route: &'a str,
    pub upstream: &'a str,
    pub server: &'a str,
    /// Request body bytes read from the client.
    pub bytes_in: usize,
    /// Response body bytes sent to the client.
    pub bytes_out: usize,
    pub duration: Duration,
    /// From choosing the server to its response header; `None` when no server answered.
    pub upstream_duration: Option<Duration>,
    pub error: Option<&'static str>,
}

/// Milliseconds with microsecond precision, for humans and JSON alike.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

/// Writes the access line (a no-op when the `access` target is filtered out).
pub fn log(line: &AccessLine<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = line.request_id,
        listener = line.listener,
        client = line.client.map(tracing::field::display),
        method = line.method,
        path = line.path,
        status = line.status,
        route = line.route,
        upstream = line.upstream,
        server = line.server,
        bytes_in = line.bytes_in as u64,
        bytes_out = line.bytes_out as u64,
        duration_ms = millis(line.duration),
        upstream_ms = line.upstream_duration.map(millis),
        error = line.error,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_milliseconds_with_microseconds() {
        assert_eq!(millis(Duration::from_micros(1_234_567)), 1234.567);
        assert_eq!(millis(Duration::ZERO), 0.0);
    }
}
