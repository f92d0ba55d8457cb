//! The wall clock, read in one place. Entries carry the leader's stamps;
//! the wall clock is read only to stamp, to age, and for diagnostics, never
//! to decide what an exporter sends (`docs/architecture.md`).
//!
//! A clock before 1970 is a broken host: it reads as 0 here, which beats
//! failing a request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch (zero before it).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos() -> u64 {
    u64::try_from(since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}
