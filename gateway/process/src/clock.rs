//! Wall-clock time as both processes record it: Unix seconds (credentials, sessions,
//! tickets, certificates), Unix milliseconds (audit events, log throttling). A clock before
//! 1970 reads as 0 (never a panic).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (an OCSF `time`).
pub fn unix_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
