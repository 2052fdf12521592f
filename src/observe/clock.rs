//! Wall-clock time as Unix seconds and milliseconds, for metrics, logs and the status page.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_secs() -> i64 {
    unix_millis() / 1000
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_millis() -> i64 {
    to_millis(SystemTime::now())
}

/// A time as Unix milliseconds (0 if before the epoch).
pub fn to_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
