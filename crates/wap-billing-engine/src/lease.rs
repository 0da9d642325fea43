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

/// Acquires and renews one processor's lease and publishes [`Leadership`] on a watch channel.
#[derive(Debug)]
pub struct LeaderElector {
    store: Arc<dyn StateStore>,
    processor: ProcessorKind,
    holder: String,
    ttl: Duration,
    mode: ElectionMode,
    tx: watch::Sender<Leadership>,
    held: Mutex<Option<Fence>>,
}

impl LeaderElector {
    /// An elector for `processor` using the config's `InstanceId`, `LeaseTtlMilliseconds` and `LeaderElectionMode`.
    pub fn new(store: Arc<dyn StateStore>, processor: ProcessorKind, config: &EngineConfig) -> Self {
        LeaderElector {
            store,
            processor,
            holder: config.instance_id.clone(),
            ttl: config.lease_ttl,
            mode: config.election_mode,
            tx: watch::Sender::new(Leadership::Standby),
            held: Mutex::new(None),
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

    /// How often a standby instance tries to acquire.
    fn retry_period(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(5))
    }

    fn publish(&self, leadership: Leadership) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = leadership.fence().cloned();
        self.tx.send_if_modified(|current| {
            if *current == leadership {
                false
            } else {
                *current = leadership;
                true
            }
        });
    }

    /// Runs the election forever (drop the future to stop; then call [`LeaderElector::release`]).
    pub async fn run(&self) {
        let mut first = true;
        loop {
            let asked_at = Instant::now();
            let steal = first && self.mode == ElectionMode::SingleInstance;
            match self.store.try_acquire_lease(self.processor, &self.holder, self.ttl, steal).await {
                Ok(Some(lease)) => {
                    first = false;
                    let fence =
                        Fence { processor: self.processor, holder: self.holder.clone(), generation: lease.generation };
                    tracing::info!(processor = %self.processor, holder = %self.holder, generation = lease.generation, steal, "lease acquired");
                    self.publish(Leadership::Leader(fence.clone()));
                    self.hold(&fence, asked_at + self.ttl).await;
                    tracing::warn!(processor = %self.processor, holder = %self.holder, generation = fence.generation, "lease lost; processing stopped");
                    self.publish(Leadership::Standby);
                }
                Ok(None) => {
                    first = false;
                    self.publish(Leadership::Standby);
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

    /// Renews until the lease is lost; returns when it is.
    async fn hold(&self, fence: &Fence, mut deadline: Instant) {
        loop {
            let renew_at = deadline.checked_sub(self.ttl / 2).unwrap_or(deadline);
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
