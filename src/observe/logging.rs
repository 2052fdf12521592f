//! Log set-up: tracing to stderr, human-readable text by default or one JSON object per line
//! (`log.format: json`), filtered by `FERROGATE_LOG` (env-filter syntax, default `info`); the
//! access log is the `access` target, switched off with `log.access: false`.
//!
//! Access lines (one per request) are batched, as nginx's `access_log … buffer= flush=` does:
//! the proxy thread appends the formatted line to a shared buffer and a flusher thread writes
//! the batch to stderr every [`FLUSH_EVERY`], or as soon as it passes [`FLUSH_AT`]. A request
//! pays no `write` of its own (that was a tenth of a keep-alive request's cost) and never
//! waits on a slow log sink unless [`HOLD_AT`] bytes are already waiting, when logging waits
//! rather than drops. Every other event is written at once. The buffer is written out before
//! the process exits ([`flush`]).

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing_subscriber::filter::{Directive, EnvFilter};
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriter, MakeWriterExt};

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

/// Longest an access line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered bytes that wake the flusher early.
pub const FLUSH_AT: usize = 64 * 1024;
/// Buffered bytes past which a new line waits for the flusher.
pub const HOLD_AT: usize = 8 * 1024 * 1024;

/// Access lines waiting to be written.
#[derive(Default)]
struct Batch {
    lines: Mutex<Vec<u8>>,
    /// Wakes the flusher (buffer past [`FLUSH_AT`]) and writers held at [`HOLD_AT`].
    changed: Condvar,
}

impl Batch {
    fn push(&self, line: &[u8]) {
        let mut lines = self.lines.lock();
        while lines.len() >= HOLD_AT {
            self.changed.wait_for(&mut lines, FLUSH_EVERY);
        }
        lines.extend_from_slice(line);
        if lines.len() >= FLUSH_AT {
            self.changed.notify_all();
        }
    }

    /// Takes what is buffered, waiting up to `wait` for something to take.
    fn take(&self, wait: Duration) -> Vec<u8> {
        let mut lines = self.lines.lock();
        self.changed
            .wait_while_for(&mut lines, |l| l.len() < FLUSH_AT, wait);
        let taken = std::mem::take(&mut *lines);
        self.changed.notify_all();
        taken
    }

    /// Writes what is buffered to stderr.
    fn write_out(&self, wait: Duration) {
        let batch = self.take(wait);
        if !batch.is_empty() {
            let _ = std::io::stderr().lock().write_all(&batch);
        }
    }
}

/// The access-line writer handed to the formatter: appends one formatted line per event.
#[derive(Clone)]
struct BatchWriter(Arc<Batch>);

impl Write for BatchWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

static ACCESS_BATCH: OnceLock<Arc<Batch>> = OnceLock::new();

/// Writes out access lines still buffered. Called before the process exits.
pub fn flush() {
    if let Some(batch) = ACCESS_BATCH.get() {
        batch.write_out(Duration::ZERO);
    }
}

/// Installs the process's log subscriber (once; later calls do nothing).
pub fn init(log: &Log) {
    if ACCESS_BATCH.get().is_some() {
        return;
    }
    let filter = filter(log);
    let batch = Arc::new(Batch::default());
    let flusher = batch.clone();
    let started = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || loop {
            flusher.write_out(FLUSH_EVERY);
        });
    // Without the flusher thread, access lines are written at once like every other line.
    let writer = match &started {
        Ok(_) if ACCESS_BATCH.set(batch.clone()).is_ok() => BoxMakeWriter::new(
            BatchWriter(batch)
                .with_filter(|meta| meta.target() == ACCESS_TARGET)
                .or_else(std::io::stderr),
        ),
        _ => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
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
    if let Err(error) = started {
        tracing::warn!(%error, "cannot start the access-log writer; access lines are not batched");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_for_the_period_or_the_threshold() {
        let batch = Batch::default();
        batch.push(b"one\n");
        batch.push(b"two\n");
        // Below the threshold: taken when the period ends, in order.
        assert_eq!(batch.take(Duration::from_millis(10)), b"one\ntwo\n");
        assert!(batch.take(Duration::ZERO).is_empty());
        // Past the threshold: taken at once.
        let big = vec![b'x'; FLUSH_AT];
        batch.push(&big);
        let started = std::time::Instant::now();
        assert_eq!(batch.take(Duration::from_secs(10)).len(), FLUSH_AT);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_full_buffer_holds_writers_until_the_flusher_takes_it() {
        let batch = Arc::new(Batch::default());
        batch.push(&vec![b'x'; HOLD_AT]);
        let writer = {
            let batch = batch.clone();
            std::thread::spawn(move || batch.push(b"late\n"))
        };
        std::thread::sleep(Duration::from_millis(50));
        // The writer is still waiting: nothing was added.
        assert_eq!(batch.lines.lock().len(), HOLD_AT);
        assert_eq!(batch.take(Duration::ZERO).len(), HOLD_AT);
        writer.join().unwrap();
        assert_eq!(batch.take(Duration::ZERO), b"late\n");
    }
}
