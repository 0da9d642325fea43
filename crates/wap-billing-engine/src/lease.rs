//! Leader election through a lease row in the state store (docs/protocol/adapter-engine.md §5), shaped like kube-runtime's
//! `lease.rs`.
//!
//! Each processor has one lease row: holder, generation (the fencing token) and expiry. A [`LeaderElector`] tries to
//! acquire it (free, released or expired: the generation is bumped); once it holds it, it renews at half the TTL.
//! It announces [`Leadership::Standby`] — and the processor drops the billing call in flight — as soon as a
//! renewal is refused, or the local deadline (`time of the acquiring/renewing request + TTL`, never later than the
//! store's expiry) passes without a successful renewal. Every commit re-checks the generation in its transaction,
//! so even an instance that has not noticed its loss yet (a paused VM) cannot commit: fencing, not timing, is what
//! makes it safe.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use crate::config::{ElectionMode, EngineConfig};
use crate::store::{Fence, ProcessorKind, StateStore};

/// The most lease renewals one elector has unanswered at once: one every TTL/6 for 5/6 of the TTL, enough for a
/// store whose renewals take up to 5/6 of the TTL.
const MAX_RENEWALS_IN_FLIGHT: usize = 5;

/// Whether this instance runs a processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// Not the leader (yet): another instance holds the lease, or it was lost.
    Standby,
    /// The leader, under this fence.
    Leader(Fence),
}

impl Leadership {
    /// The fence while leader.
    pub fn fence(&self) -> Option<&Fence> {
        match self {
            Leadership::Leader(f) => Some(f),
            Leadership::Standby => None,
        }
    }
}

/// What the processor needs to know about the lease besides the fence: until when it is held for sure (the local
/// deadline, on this process's monotonic clock) and until when a new leader must wait before its first billing call.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseTimes {
    inner: Arc<Mutex<LeaseTimesInner>>,
}

#[derive(Debug, Default)]
struct LeaseTimesInner {
    deadline: Option<Instant>,
    first_call_not_before: Option<Instant>,
    conflict: Option<String>,
}

impl LeaseTimes {
    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseTimesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The local deadline of the lease: no later than the store's expiry as long as clocks run at the same rate.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }

    /// A new leader that took the lease over from a holder that did not release it waits until then before its
    /// first billing call (the old holder's calls end at their deadline at the latest).
    pub(crate) fn first_call_not_before(&self) -> Option<Instant> {
        self.lock().first_call_not_before
    }

    /// Why this instance cannot take the lease although it is free for it (a duplicate `InstanceId`).
    pub(crate) fn conflict(&self) -> Option<String> {
        self.lock().conflict.clone()
    }
}

/// Acquires and renews one processor's lease and publishes [`Leadership`] on a watch channel.
///
/// Renewal starts early (TTL/6 into a term, then a third into each TTL) and is pipelined: while a renewal is
/// unanswered another one goes out every TTL/6, so a store whose renewals take longer than half the TTL (up to
/// about 5/6 of it) keeps the lease without a gap; a failed renewal is retried every TTL/10 until the local
/// deadline. After a lost deadline the elector first tries to **reclaim** its own generation (a renewal under the
/// old fence) before it acquires anew, so even a store slower than that does not bump the generation on every
/// round (leadership does not flap).
///
/// A live lease held under this instance's own `InstanceId` with a generation this elector did not acquire means
/// another process runs with the same `InstanceId`: the elector refuses to take it (it would depose the other
/// process, which then deposes this one, forever), logs an error and reports it in the processor's status.
#[derive(Debug)]
pub struct LeaderElector {
    store: Arc<dyn StateStore>,
    processor: ProcessorKind,
    holder: String,
    ttl: Duration,
    call_timeout: Duration,
    mode: ElectionMode,
    tx: watch::Sender<Leadership>,
    held: Mutex<Option<Fence>>,
    times: LeaseTimes,
}

impl LeaderElector {
    /// An elector for `processor` using the config's `InstanceId`, `LeaseTtlMilliseconds` and `LeaderElectionMode`.
    pub fn new(store: Arc<dyn StateStore>, processor: ProcessorKind, config: &EngineConfig) -> Self {
        LeaderElector {
            store,
            processor,
            holder: config.instance_id.clone(),
            ttl: config.lease_ttl,
            call_timeout: config.handler_timeout,
            mode: config.election_mode,
            tx: watch::Sender::new(Leadership::Standby),
            held: Mutex::new(None),
            times: LeaseTimes::default(),
        }
    }

    /// A receiver of leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.tx.subscribe()
    }

    /// The current leadership.
    pub fn current(&self) -> Leadership {
        self.tx.borrow().clone()
    }

    /// The local lease deadline, takeover wait and conflict, shared with the processor.
    pub(crate) fn times(&self) -> LeaseTimes {
        self.times.clone()
    }

    /// Why the lease cannot be taken although it is this instance's to take (a duplicate `InstanceId`).
    pub fn conflict(&self) -> Option<String> {
        self.times.conflict()
    }

    /// How often a standby instance tries to acquire.
    fn retry_period(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(5))
    }

    fn publish(&self, leadership: Leadership) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = leadership.fence().cloned();
        if leadership.fence().is_none() {
            self.times.lock().deadline = None;
        }
        self.tx.send_if_modified(|current| {
            if *current == leadership {
                false
            } else {
                *current = leadership;
                true
            }
        });
    }

    fn set_conflict(&self, conflict: Option<String>) {
        let mut times = self.times.lock();
        if times.conflict != conflict {
            if let Some(c) = &conflict {
                tracing::error!(processor = %self.processor, holder = %self.holder, "{c}");
            }
            times.conflict = conflict;
        }
    }

    /// Runs the election forever (drop the future to stop; then call [`LeaderElector::release`]).
    pub async fn run(&self) {
        let mut first = true;
        // The fence of the last term: reclaimed by a renewal when the local deadline passed but the store still
        // has it (a slow renewal), so the generation is not bumped.
        let mut last: Option<Fence> = None;
        loop {
            let asked_at = Instant::now();
            if let Some(fence) = last.clone() {
                match self.store.renew_lease(&fence, self.ttl).await {
                    Ok(true) => {
                        tracing::info!(processor = %self.processor, generation = fence.generation, "lease reclaimed under the same generation");
                        self.lead(&fence, asked_at, None).await;
                        continue;
                    }
                    Ok(false) => last = None,
                    Err(e) => {
                        tracing::warn!(processor = %self.processor, error = %e, "lease renewal failed; retrying");
                        sleep(self.retry_period()).await;
                        continue;
                    }
                }
            }
            let steal = first && self.mode == ElectionMode::SingleInstance;
            // Who held it before: a holder that did not release its lease may still be inside a billing call
            // until that call's deadline.
            let previous = match self.store.lease(self.processor).await {
                Ok(row) => row,
                Err(e) => {
                    tracing::warn!(processor = %self.processor, error = %e, "lease read failed; retrying");
                    self.publish(Leadership::Standby);
                    sleep(self.retry_period()).await;
                    continue;
                }
            };
            match self.store.try_acquire_lease(self.processor, &self.holder, self.ttl, steal).await {
                Ok(Some(lease)) => {
                    first = false;
                    self.set_conflict(None);
                    let fence =
                        Fence { processor: self.processor, holder: self.holder.clone(), generation: lease.generation };
                    // In SingleInstance mode the first acquisition takes the lease from this instance's own dead
                    // predecessor (the operator said there is only one instance): no wait, as documented.
                    let unreleased =
                        !steal && previous.as_ref().is_some_and(|p| p.holder.is_some() && p.generation > 0);
                    let wait = unreleased.then(|| asked_at + self.call_timeout.min(self.ttl));
                    tracing::info!(processor = %self.processor, holder = %self.holder, generation = lease.generation, steal, "lease acquired");
                    self.lead(&fence, asked_at, wait).await;
                    last = Some(fence);
                }
                Ok(None) => {
                    first = false;
                    self.publish(Leadership::Standby);
                    let duplicate = previous
                        .as_ref()
                        .and_then(|p| (p.holder.as_deref() == Some(self.holder.as_str())).then_some(p.generation));
                    self.set_conflict(duplicate.map(|generation| {
                        format!(
                            "the {} lease is held under this instance's InstanceId {:?} (generation {generation}) by \
                             another process: two instances share one InstanceId (give each a unique one), or this \
                             instance's previous process still holds it until its TTL ends; not taking it",
                            self.processor, self.holder
                        )
                    }));
                    sleep(self.retry_period()).await;
                }
                Err(e) => {
                    tracing::warn!(processor = %self.processor, error = %e, "lease acquisition failed; retrying");
                    self.publish(Leadership::Standby);
                    sleep(self.retry_period()).await;
                }
            }
        }
    }

    /// Leads under `fence` until the lease is lost.
    async fn lead(&self, fence: &Fence, asked_at: Instant, first_call_not_before: Option<Instant>) {
        {
            let mut times = self.times.lock();
            times.deadline = Some(asked_at + self.ttl);
            times.first_call_not_before = first_call_not_before;
        }
        self.publish(Leadership::Leader(fence.clone()));
        self.hold(fence, asked_at + self.ttl).await;
        tracing::warn!(processor = %self.processor, holder = %self.holder, generation = fence.generation, "lease lost; processing stopped");
        self.publish(Leadership::Standby);
    }

    /// Renews until the lease is lost; returns when it is.
    ///
    /// Renewals are **pipelined**: while one is unanswered, another is sent every TTL/6 (at most
    /// [`MAX_RENEWALS_IN_FLIGHT`] at once), and each successful answer moves the local deadline to the time its
    /// request was *sent* + TTL. So a store whose renewals take longer than TTL/2 — up to about 5/6 of the TTL —
    /// keeps the lease without a gap: the next answer is always on its way. The first renewal of a term goes out
    /// after TTL/6; later ones a third into the TTL when the store answers fast, earlier when it has been slow
    /// (twice the last answer's latency plus TTL/6 before the deadline). Only the deadline itself ends the hold:
    /// the instance steps down when the TTL has really run out without an answer.
    async fn hold(&self, fence: &Fence, mut deadline: Instant) {
        type Renewal<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = (Instant, Result<bool, crate::store::StoreError>)> + Send + 'a>,
        >;
        let hedge = (self.ttl / 6).max(Duration::from_millis(1));
        let mut in_flight: FuturesUnordered<Renewal<'_>> = FuturesUnordered::new();
        // Nothing is known about the store's latency at the start of a term: assume a third of the TTL.
        let mut latency = self.ttl / 3;
        let mut next_ask = self.renew_at(deadline, latency);
        loop {
            tokio::select! {
                biased;
                Some((asked_at, outcome)) = in_flight.next(), if !in_flight.is_empty() => match outcome {
                    Ok(true) => {
                        latency = asked_at.elapsed();
                        if asked_at + self.ttl > deadline {
                            deadline = asked_at + self.ttl;
                            self.times.lock().deadline = Some(deadline);
                        }
                        if in_flight.is_empty() {
                            next_ask = self.renew_at(deadline, latency);
                        }
                    }
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(processor = %self.processor, error = %e, "lease renewal failed; retrying until it expires");
                        if in_flight.is_empty() {
                            next_ask = Instant::now() + (self.ttl / 10).max(Duration::from_millis(1));
                        }
                    }
                },
                () = sleep_until(deadline) => return,
                () = sleep_until(next_ask), if in_flight.len() < MAX_RENEWALS_IN_FLIGHT => {
                    let asked_at = Instant::now();
                    if !in_flight.is_empty() {
                        tracing::debug!(processor = %self.processor, in_flight = in_flight.len(), "lease renewal slow; sending another");
                    }
                    let store = &self.store;
                    let ttl = self.ttl;
                    in_flight.push(Box::pin(async move { (asked_at, store.renew_lease(fence, ttl).await) }));
                    next_ask = asked_at + hedge;
                }
            }
        }
    }

    /// When to send the next renewal of a lease ending at `deadline`: a third into the TTL (two thirds left), or
    /// earlier when the last renewal took `latency` (twice that plus TTL/6 left); now at the latest.
    fn renew_at(&self, deadline: Instant, latency: Duration) -> Instant {
        let lead = (self.ttl * 2 / 3).max(latency.saturating_mul(2) + self.ttl / 6).min(self.ttl);
        deadline.checked_sub(lead).unwrap_or(deadline).max(Instant::now())
    }

    /// Gives the lease back (if held) so another instance can take over at once, and announces standby.
    pub async fn release(&self) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.publish(Leadership::Standby);
        if let Some(fence) = held {
            match self.store.release_lease(&fence).await {
                Ok(()) => tracing::info!(processor = %self.processor, generation = fence.generation, "lease released"),
                Err(e) => {
                    tracing::warn!(processor = %self.processor, error = %e, "lease release failed; it will expire")
                }
            }
        }
    }
}
