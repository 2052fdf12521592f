//! Log set-up: tracing to stderr, human-readable text by default or one JSON object per line
//! (`log.format: json`), filtered by `FERROGATE_LOG` (env-filter syntax, default `info`); the
//! access log is the `access` target, switched off with `log.access: false`.

use tracing_subscriber::filter::{Directive, EnvFilter};

use super::access::ACCESS_TARGET;
use crate::config::model::{Log, LogFormat};

/// The environment variable holding the log filter.
pub const LOG_FILTER_ENV: &str = "FERROGATE_LOG";

/// The filter: `FERROGATE_LOG` or `info`, with the access target off when asked.
pub fn filter(log: &Log) -> EnvFilter {
    let mut filter =
        EnvFilter::try_from_env(LOG_FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    if !log.access {
        if let Ok(off) = format!("{ACCESS_TARGET}=off").parse::<Directive>() {
            filter = filter.add_directive(off);
        }
    }
    filter
}

/// Installs the process's log subscriber (once; later calls do nothing).
pub fn init(log: &Log) {
    let filter = filter(log);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
