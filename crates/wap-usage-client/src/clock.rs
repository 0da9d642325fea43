//! [`Clock`]: the time source of back-off, timeouts and polling, injectable for tests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// A boxed sleep future.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The time source of the client: monotonic time and sleeping (back-off, request timeouts, `follow` waits) and
/// wall-clock time (to read a `Retry-After` HTTP-date).
///
/// The default, [`TokioClock`], uses tokio's timer, so `tokio::time::pause()` drives it in tests.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// Monotonic now.
    fn now(&self) -> tokio::time::Instant;
    /// Wall-clock now.
    fn wall_clock(&self) -> SystemTime;
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The default [`Clock`]: `tokio::time` for monotonic time and sleeping, `SystemTime::now()` for the wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}
