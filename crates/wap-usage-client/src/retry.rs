//! [`RetryPolicy`]: when and how long to wait before repeating a failed request.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::error::Error;

/// How failed requests are retried: exponential back-off with jitter, bounded by attempts and/or elapsed time (or
/// unlimited), honouring `Retry-After`.
///
/// Only [retryable](Error::is_retryable) errors are retried: connect errors, resets, timeouts, truncated bodies,
/// bodies that are not a JSON array, 408, 429 and 5xx. 400, 401, 403, 404 (and every other error) are returned at
/// once.
///
/// The wait before retry `n` (1-based) has the base `min(initial × multiplier^(n-1), max_delay)`; with jitter
/// (default) the actual wait is drawn uniformly from `[base/2, base]` (docs/protocol/adapter-engine.md §3). A `Retry-After` header
/// on a 408/429/5xx answer lengthens the computed wait to what it asks (capped by
/// [`max_retry_after`](RetryPolicy::max_retry_after)); it never shortens it, so `Retry-After: 0` or a date in the
/// past still waits the back-off. All arithmetic saturates: `Duration::MAX` as a cap and a `Retry-After` of
/// 10^20 seconds wait "forever" rather than overflow.
///
/// The default is the spec's back-off (`WapRetryInitialMilliseconds` 1000 → `WapRetryMaxMilliseconds` 300000) bounded
/// to 15 minutes of elapsed time per request, so a single call does not hang forever; an adapter that must "retry
/// until it succeeds" uses [`RetryPolicy::unlimited`] (or relies on `follow`, which keeps polling after errors).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    initial_delay: Duration,
    max_delay: Duration,
    multiplier: f64,
    jitter: bool,
    jitter_seed: Option<u64>,
    max_attempts: Option<u32>,
    max_elapsed: Option<Duration>,
    honour_retry_after: bool,
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(300)).max_elapsed(Duration::from_secs(900))
    }
}

impl RetryPolicy {
    /// Exponential back-off from `initial` doubling up to `max_delay`, with jitter, honouring `Retry-After`, with no
    /// limit on attempts or elapsed time (add one with [`max_attempts`](Self::max_attempts) /
    /// [`max_elapsed`](Self::max_elapsed)).
    pub fn exponential(initial: Duration, max_delay: Duration) -> Self {
        RetryPolicy {
            initial_delay: initial,
            max_delay: max_delay.max(initial),
            multiplier: 2.0,
            jitter: true,
            jitter_seed: None,
            max_attempts: None,
            max_elapsed: None,
            honour_retry_after: true,
            max_retry_after: Duration::from_secs(300),
        }
    }

    /// The default back-off without any limit: retries until the request succeeds (or fails with an error that is not
    /// retryable). The spec's adapter behaviour for WAP-side errors.
    pub fn unlimited() -> Self {
        RetryPolicy::default().without_limits()
    }

    /// No retries: every request is made once.
    pub fn disabled() -> Self {
        RetryPolicy::default().max_attempts(1)
    }

    /// At most `attempts` attempts in all, the first included (`1` = no retry; `0` is read as `1`).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Gives up when the next wait would end more than `elapsed` after the first attempt started.
    pub fn max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = Some(elapsed);
        self
    }

    /// Removes the attempt and elapsed-time limits.
    pub fn without_limits(mut self) -> Self {
        self.max_attempts = None;
        self.max_elapsed = None;
        self
    }

    /// The factor the base wait grows by after each retry (default 2; values below 1 are read as 1).
    pub fn multiplier(mut self, factor: f64) -> Self {
        self.multiplier = if factor.is_finite() && factor >= 1.0 { factor } else { 1.0 };
        self
    }

    /// Waits exactly the base delay (no jitter); useful for deterministic tests.
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// Seeds the jitter's random generator (reproducible waits).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Whether a `Retry-After` header may lengthen the computed wait (default `true`).
    pub fn honour_retry_after(mut self, honour: bool) -> Self {
        self.honour_retry_after = honour;
        self
    }

    /// The longest `Retry-After` wait honoured (default 300 s); longer ones are cut to it (`Duration::MAX`: no
    /// cap). The computed back-off is waited in any case.
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// The attempt limit, if any.
    pub fn attempt_limit(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The elapsed-time limit, if any.
    pub fn elapsed_limit(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// The base wait before retry `retry` (1-based), before jitter: `min(initial × multiplier^(retry-1), max)`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(64) as i32;
        let secs = self.initial_delay.as_secs_f64() * self.multiplier.powi(exp);
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay).min(self.max_delay)
        }
    }

    /// Starts the schedule of one request.
    pub fn start(&self, clock: Arc<dyn Clock>) -> RetrySchedule {
        let rng = match self.jitter_seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        RetrySchedule { policy: self.clone(), started: clock.now(), clock, failures: 0, rng }
    }
}

/// The running retry state of one request: counts failures and computes the next wait.
#[derive(Debug)]
pub struct RetrySchedule {
    policy: RetryPolicy,
    clock: Arc<dyn Clock>,
    started: tokio::time::Instant,
    failures: u32,
    rng: fastrand::Rng,
}

impl RetrySchedule {
    /// Records a failed attempt; returns the wait before the next attempt, or `None` to give up (the error is not
    /// retryable, or a limit is reached).
    pub fn next_delay(&mut self, error: &Error) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if !error.is_retryable() {
            return None;
        }
        if let Some(max) = self.policy.max_attempts {
            if self.failures >= max {
                return None;
            }
        }
        // The policy's wait is the floor: a `Retry-After` of 0, a date in the past or one the wall clock cannot
        // place only ever lengthens it (up to `max_retry_after`), so a server cannot make the client spin.
        let backoff = self.backoff(self.failures);
        let delay = match error.retry_after().filter(|_| self.policy.honour_retry_after) {
            Some(ra) => backoff.max(ra.delay_from(self.clock.wall_clock()).min(self.policy.max_retry_after)),
            None => backoff,
        };
        if let Some(max) = self.policy.max_elapsed {
            let elapsed = self.clock.now().saturating_duration_since(self.started);
            if elapsed.saturating_add(delay) > max {
                return None;
            }
        }
        Some(delay)
    }

    /// The computed wait before retry `retry`: the base delay, drawn from `[base/2, base]` with jitter.
    fn backoff(&mut self, retry: u32) -> Duration {
        let base = self.policy.base_delay(retry);
        if self.policy.jitter && !base.is_zero() {
            let half = base / 2;
            let span = (base - half).as_nanos().min(u128::from(u64::MAX)) as u64;
            half.saturating_add(Duration::from_nanos(self.rng.u64(0..=span)))
        } else {
            base
        }
    }

    /// How many attempts have failed so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::retry_after::RetryAfter;

    fn status(code: u16, retry_after: Option<RetryAfter>) -> Error {
        Error::Status {
            status: code,
            url: Box::new(url::Url::parse("http://127.0.0.1/usage").unwrap()),
            body_snippet: String::new(),
            retry_after,
        }
    }

    #[test]
    fn base_delay_doubles_up_to_the_cap() {
        let p = RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(1));
        let got: Vec<u128> = (1..=6).map(|n| p.base_delay(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.base_delay(10_000), Duration::from_secs(1));
        let d = RetryPolicy::default();
        assert_eq!(d.base_delay(1), Duration::from_secs(1));
        assert_eq!(d.base_delay(20), Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_half_and_full_base() {
        let p = RetryPolicy::exponential(Duration::from_millis(1000), Duration::from_secs(60)).jitter_seed(7);
        let mut s = p.start(Arc::new(TokioClock));
        let mut distinct = std::collections::HashSet::new();
        for n in 1..=6u32 {
            let d = s.next_delay(&status(503, None)).unwrap();
            let base = p.base_delay(n);
            assert!(d >= base / 2 && d <= base, "retry {n}: {d:?} not in [{:?}, {base:?}]", base / 2);
            distinct.insert(d);
        }
        assert!(distinct.len() > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn limits_and_classification() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let p =
            RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(8)).without_jitter().max_attempts(3);
        let mut s = p.start(clock.clone());
        assert_eq!(s.next_delay(&status(500, None)), Some(Duration::from_secs(1)));
        assert_eq!(s.next_delay(&status(500, None)), Some(Duration::from_secs(2)));
        assert_eq!(s.next_delay(&status(500, None)), None, "third failure ends a 3-attempt budget");

        let mut s = p.start(clock.clone());
        assert_eq!(s.next_delay(&status(401, None)), None);
        assert_eq!(RetryPolicy::disabled().start(clock.clone()).next_delay(&status(503, None)), None);

        let p = RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(8))
            .without_jitter()
            .max_elapsed(Duration::from_secs(5));
        let mut s = p.start(clock.clone());
        assert_eq!(s.next_delay(&status(503, None)), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.next_delay(&status(503, None)), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        // 3 s elapsed + 4 s wait > 5 s
        assert_eq!(s.next_delay(&status(503, None)), None);

        let mut s = RetryPolicy::unlimited().without_jitter().start(clock);
        for _ in 0..1000 {
            assert!(s.next_delay(&status(502, None)).is_some());
        }
        assert_eq!(s.failures(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_lengthens_the_backoff_and_is_capped() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let p = RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(8))
            .without_jitter()
            .max_retry_after(Duration::from_secs(60));
        let mut s = p.start(clock.clone());
        let ra = Some(RetryAfter::Delay(Duration::from_secs(7)));
        assert_eq!(s.next_delay(&status(429, ra)), Some(Duration::from_secs(7)));
        let ra = Some(RetryAfter::Delay(Duration::from_secs(3600)));
        assert_eq!(s.next_delay(&status(503, ra)), Some(Duration::from_secs(60)));
        let mut s = p.clone().honour_retry_after(false).start(clock);
        assert_eq!(s.next_delay(&status(503, ra)), Some(Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_never_shortens_the_backoff() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let p = RetryPolicy::exponential(Duration::from_secs(2), Duration::from_secs(8)).without_jitter();
        let mut s = p.start(clock.clone());
        let zero = Some(RetryAfter::Delay(Duration::ZERO));
        assert_eq!(s.next_delay(&status(503, zero)), Some(Duration::from_secs(2)));
        assert_eq!(s.next_delay(&status(503, zero)), Some(Duration::from_secs(4)));
        let past = RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(s.next_delay(&status(503, past)), Some(Duration::from_secs(8)));
        let before_1601 = RetryAfter::parse("Wed, 01 Jan 1000 00:00:00 GMT");
        assert!(before_1601.is_some());
        assert_eq!(s.next_delay(&status(503, before_1601)), Some(Duration::from_secs(8)));
        // a short Retry-After below a jittered back-off: the back-off wins
        let mut s = p.clone().jitter_seed(3).start(clock);
        let one = Some(RetryAfter::Delay(Duration::from_millis(1)));
        assert!(s.next_delay(&status(503, one)).unwrap() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn durations_saturate_instead_of_overflowing() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let huge = Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)));
        // no cap on Retry-After and an elapsed limit: `elapsed + delay` must not overflow
        let p = RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(8))
            .max_retry_after(Duration::MAX)
            .max_elapsed(Duration::from_secs(3600));
        let mut s = p.start(clock.clone());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.next_delay(&status(503, huge)), None, "a wait past the elapsed limit gives up");
        let mut s = p.clone().without_limits().start(clock.clone());
        assert_eq!(s.next_delay(&status(503, huge)), Some(Duration::from_secs(u64::MAX)));
        // Duration::MAX as the back-off cap, with a multiplier that overflows f64 and with jitter
        let p = RetryPolicy::exponential(Duration::from_secs(1), Duration::MAX)
            .multiplier(1e300)
            .max_elapsed(Duration::MAX);
        let mut s = p.start(clock);
        for _ in 0..5 {
            let d = s.next_delay(&status(503, None)).unwrap();
            assert!(d >= Duration::from_millis(500));
        }
        assert_eq!(p.base_delay(3), Duration::MAX);
        let almost = RetryPolicy::exponential(Duration::from_secs(u64::MAX / 2), Duration::MAX).without_jitter();
        assert!(almost.base_delay(2) >= Duration::from_secs(u64::MAX / 2));
    }
}
