//! The per-`EventId` answer cache: WAP may resend an approval call (after its own timeout); the resend gets the
//! first answer without a second evaluation, and a duplicate that arrives while the first is still being decided
//! waits for that decision (approval-and-pricing.md §3.1).
//!
//! Memory is bounded: answers expire after the window (counted from the first request) and are purged on the way;
//! when `capacity` entries are held the oldest is dropped. The common path (a new event, no duplicate) allocates
//! nothing but the map entry; a waiting duplicate gets a one-shot channel.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use wap_types::Decision;

#[derive(Debug)]
enum Slot {
    Pending { waiters: Vec<oneshot::Sender<Decision>>, expires: Instant, generation: u64 },
    Done { decision: Decision, expires: Instant, generation: u64 },
}

impl Slot {
    fn generation(&self) -> u64 {
        match self {
            Slot::Pending { generation, .. } | Slot::Done { generation, .. } => *generation,
        }
    }
}

/// A fast hasher for `EventId` keys (sequence numbers sent by an authenticated WAP; no need for SipHash's
/// flooding resistance). The low bits are the id itself, so consecutive events land in neighbouring buckets
/// (memory locality: WAP's ids ascend); the top bits, which the table uses as tags, are mixed.
#[derive(Debug, Default, Clone, Copy)]
struct EventIdHasher(u64);

impl std::hash::Hasher for EventIdHasher {
    fn finish(&self) -> u64 {
        let mixed = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (self.0 & (u64::MAX >> 8)) ^ (mixed & !(u64::MAX >> 8))
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x100_0000_01B3);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 ^= n as u64;
    }
}

type EventIdMap<V> = HashMap<i64, V, std::hash::BuildHasherDefault<EventIdHasher>>;

#[derive(Debug, Default)]
struct Entries {
    slots: EventIdMap<Slot>,
    /// Answers dropped before their window ended because the cache was full.
    evicted_early: u64,
    /// Insertion order: (expiry, event id, generation).
    order: VecDeque<(Instant, i64, u64)>,
    next_generation: u64,
}

type Shared = Arc<Mutex<Entries>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Entries> {
    // No code panics while holding this lock; a poisoned lock would still hold consistent maps.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the cache knows about an event.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Answered within the window: repeat this.
    Hit(Decision),
    /// Being decided by an earlier request: wait for its answer (an error = the decider vanished).
    Wait(oneshot::Receiver<Decision>),
    /// New: decide it and report through the ticket.
    Miss(Ticket),
}

/// The right (and duty) to decide one event. Dropping it unfinished wakes the waiters with an error and lets the
/// next resend decide again.
#[derive(Debug)]
pub(crate) struct Ticket {
    event_id: i64,
    generation: u64,
    shared: Option<Shared>,
}

impl Ticket {
    /// Records the answer and wakes the requests waiting for it.
    pub(crate) fn finish(mut self, decision: &Decision) {
        let Some(shared) = self.shared.take() else { return };
        let mut entries = lock(&shared);
        if let Some(slot) = entries.slots.get_mut(&self.event_id) {
            if let Slot::Pending { waiters, expires, generation } = slot {
                if *generation == self.generation {
                    let waiters = std::mem::take(waiters);
                    *slot = Slot::Done { decision: decision.clone(), expires: *expires, generation: *generation };
                    drop(entries);
                    for waiter in waiters {
                        let _ = waiter.send(decision.clone());
                    }
                }
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut entries = lock(&shared);
            let pending_here = matches!(
                entries.slots.get(&self.event_id),
                Some(Slot::Pending { generation, .. }) if *generation == self.generation
            );
            if pending_here {
                // Dropping the slot drops the waiters' senders: they learn that no answer will come.
                entries.slots.remove(&self.event_id);
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct DecisionCache {
    window: Duration,
    capacity: usize,
    shared: Shared,
}

impl DecisionCache {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        DecisionCache { window, capacity: capacity.max(1), shared: Shared::default() }
    }

    /// Looks an event up at `now`, registering it as being decided on a miss.
    pub(crate) fn lookup_at(&self, event_id: i64, now: Instant) -> Lookup {
        if self.window.is_zero() {
            return Lookup::Miss(Ticket { event_id, generation: 0, shared: None });
        }
        let mut entries = lock(&self.shared);
        match entries.slots.get_mut(&event_id) {
            Some(Slot::Done { decision, expires, .. }) if *expires > now => return Lookup::Hit(decision.clone()),
            Some(Slot::Pending { waiters, .. }) => {
                let (sender, receiver) = oneshot::channel();
                waiters.push(sender);
                return Lookup::Wait(receiver);
            }
            _ => {}
        }
        purge(&mut entries, now, self.capacity);
        let generation = entries.next_generation;
        entries.next_generation += 1;
        let expires = now + self.window;
        entries.slots.insert(event_id, Slot::Pending { waiters: Vec::new(), expires, generation });
        entries.order.push_back((expires, event_id, generation));
        Lookup::Miss(Ticket { event_id, generation, shared: Some(self.shared.clone()) })
    }

    /// Entries held (answers and pending decisions).
    pub(crate) fn len(&self) -> usize {
        lock(&self.shared).slots.len()
    }
}

fn purge(entries: &mut Entries, now: Instant, capacity: usize) {
    while let Some(&(expires, event_id, generation)) = entries.order.front() {
        let full = entries.slots.len() >= capacity;
        if expires > now && !full {
            break;
        }
        entries.order.pop_front();
        if entries.slots.get(&event_id).is_some_and(|s| s.generation() == generation) {
            if full && expires > now {
                entries.evicted_early += 1;
                if entries.evicted_early % 10_000 == 1 {
                    tracing::warn!(
                        event_id,
                        capacity,
                        evicted_early = entries.evicted_early,
                        "approval answer cache full: dropping the oldest answers before their window ends"
                    );
                }
            }
            entries.slots.remove(&event_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl DecisionCache {
        fn lookup(&self, event_id: i64) -> Lookup {
            self.lookup_at(event_id, Instant::now())
        }
    }

    fn miss(cache: &DecisionCache, id: i64) -> Ticket {
        match cache.lookup(id) {
            Lookup::Miss(t) => t,
            other => panic!("expected a miss for {id}, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_repeat_within_the_window_and_expire_after_it() {
        let cache = DecisionCache::new(Duration::from_secs(600), 100);
        miss(&cache, 7).finish(&Decision::deny("no"));
        assert!(matches!(cache.lookup(7), Lookup::Hit(Decision::Deny { reason }) if reason == "no"));
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(matches!(cache.lookup(7), Lookup::Hit(_)));
        tokio::time::advance(Duration::from_secs(2)).await;
        miss(&cache, 7).finish(&Decision::Approve);
        assert!(matches!(cache.lookup(7), Lookup::Hit(Decision::Approve)));
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_wait_for_the_first_decision() {
        let cache = DecisionCache::new(Duration::from_secs(600), 100);
        let ticket = miss(&cache, 9);
        let Lookup::Wait(first) = cache.lookup(9) else { panic!("expected a wait") };
        let Lookup::Wait(second) = cache.lookup(9) else { panic!("expected a wait") };
        ticket.finish(&Decision::Approve);
        assert_eq!(first.await.unwrap(), Decision::Approve);
        assert_eq!(second.await.unwrap(), Decision::Approve);
        assert!(matches!(cache.lookup(9), Lookup::Hit(Decision::Approve)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_ticket_lets_the_next_request_decide() {
        let cache = DecisionCache::new(Duration::from_secs(600), 100);
        let ticket = miss(&cache, 3);
        let Lookup::Wait(waiter) = cache.lookup(3) else { panic!("expected a wait") };
        drop(ticket);
        assert!(waiter.await.is_err(), "waiters learn the decider is gone");
        miss(&cache, 3).finish(&Decision::Approve);
        assert!(matches!(cache.lookup(3), Lookup::Hit(Decision::Approve)));
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded() {
        let cache = DecisionCache::new(Duration::from_secs(10), 50);
        for id in 0..1000 {
            miss(&cache, id).finish(&Decision::Approve);
            assert!(cache.len() <= 50);
        }
        // The newest answers are still there; the oldest were dropped.
        assert!(matches!(cache.lookup(999), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(0), Lookup::Miss(_)));
        // Expired answers are purged on the way.
        tokio::time::advance(Duration::from_secs(11)).await;
        miss(&cache, 5000).finish(&Decision::Approve);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_window_disables_the_cache() {
        let cache = DecisionCache::new(Duration::ZERO, 10);
        miss(&cache, 1).finish(&Decision::Approve);
        miss(&cache, 1).finish(&Decision::Approve);
        assert_eq!(cache.len(), 0);
    }
}
