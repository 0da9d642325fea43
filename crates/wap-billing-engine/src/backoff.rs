//! WAP-side back-off (docs/protocol/adapter-engine.md §3): the base wait doubles from `WapRetryInitialMilliseconds` up to
//! `WapRetryMaxMilliseconds`; each actual wait is drawn uniformly from `[base/2, base]`; a success resets it.

use std::time::Duration;

/// Exponential back-off with jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    base: Duration,
}

impl Backoff {
    /// A back-off starting at `initial`, capped at `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let max = max.max(initial);
        Backoff { initial, max, base: initial }
    }

    /// The next wait, in `[base/2, base]`; the base then doubles (up to the maximum).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let base = self.base;
        self.base = (base * 2).min(self.max);
        let half = base / 2;
        let spread = u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=spread))
    }

    /// Back to the initial base (after a success).
    pub(crate) fn reset(&mut self) {
        self.base = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_jitter_bounds_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut base = Duration::from_secs(1);
        for _ in 0..20 {
            let w = b.next_wait();
            assert!(w >= base / 2 && w <= base, "{w:?} outside [{:?}, {base:?}]", base / 2);
            base = (base * 2).min(Duration::from_secs(300));
        }
        assert_eq!(base, Duration::from_secs(300), "capped at the maximum");
        b.reset();
        let w = b.next_wait();
        assert!(w <= Duration::from_secs(1), "reset to the initial base: {w:?}");
    }
}
