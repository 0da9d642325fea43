//! The engine's wall clock, driven by Tokio's clock so that paused-time tests see virtual time pass.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Wall-clock time = the system time at creation + the Tokio time elapsed since. Monotonic while the process
/// runs; follows virtual time under `tokio::time::pause()`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_utc: DateTime<Utc>,
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock { base_utc: Utc::now(), base: Instant::now() }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.base.elapsed()).unwrap_or(chrono::Duration::MAX);
        let now = self.base_utc.checked_add_signed(elapsed).unwrap_or(DateTime::<Utc>::MAX_UTC);
        // Millisecond precision, like the state database, so stored and in-memory times compare equal.
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }
}

/// `later - earlier` as a std duration (zero when negative).
pub(crate) fn elapsed_between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> std::time::Duration {
    (later - earlier).to_std().unwrap_or_default()
}
