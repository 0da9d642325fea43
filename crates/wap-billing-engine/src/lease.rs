//! Leader election through a lease row in the state store (adapter-engine.md §5), shaped like kube-runtime's
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

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use crate::config::{ElectionMode, EngineConfig};
use crate::store::{Fence, ProcessorKind, StateStore};

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
/// Renewal starts after a third of the TTL and is retried (every TTL/10) until the local deadline; a renewal
/// that answers late still counts, and after a lost deadline the elector first tries to **reclaim** its own
/// generation (a renewal under the old fence) before it acquires anew, so a slow store does not bump the
/// generation on every round (leadership does not flap).
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
    async fn hold(&self, fence: &Fence, mut deadline: Instant) {
        loop {
            // Renew early: after a third of the TTL, leaving two thirds for a slow store and retries.
            let renew_at = deadline.checked_sub(self.ttl * 2 / 3).unwrap_or(deadline);
            sleep_until(renew_at).await;
            loop {
                let asked_at = Instant::now();
                if asked_at >= deadline {
                    return;
                }
                let outcome = tokio::select! {
                    r = self.store.renew_lease(fence, self.ttl) => r,
                    _ = sleep_until(deadline) => return,
                };
                match outcome {
                    Ok(true) => {
                        deadline = asked_at + self.ttl;
                        self.times.lock().deadline = Some(deadline);
                        break;
                    }
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(processor = %self.processor, error = %e, "lease renewal failed; retrying until it expires");
                        let pause = (self.ttl / 10).max(Duration::from_millis(1));
                        tokio::select! {
                            _ = sleep(pause) => {}
                            _ = sleep_until(deadline) => return,
                        }
                    }
                }
            }
        }
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
