//! The answer cache, keyed by the whole request identity (docs/protocol/approval-and-pricing.md §3.1): `EventId`, route,
//! operation and the entity's ids (subscription, add-on, plan). WAP may resend an approval call (after its own
//! timeout); the resend of the *same* request gets the first answer without a second evaluation, and a duplicate
//! that arrives while the first is still being decided waits for that decision. A request whose `EventId` is known
//! but whose identity differs is a conflict: it is decided afresh (the lookup says so, the caller logs it) and its
//! answer is cached under its own identity — an `EventId` alone never carries an answer to another request.
//!
//! Memory is bounded: answers expire after the window (counted from the first request) and are purged on the way;
//! when `capacity` entries are held the oldest *answers* are dropped. An entry still being decided is never
//! dropped (its waiters would otherwise get a failure answer while the decider approves, and a resend would run
//! the approver twice): the map may exceed `capacity` by the number of decisions in flight, which the decision
//! budget bounds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use wap_types::{ApprovalOperation, Decision};

use crate::routing::Route;

/// Who a request is: what a cached answer may be repeated for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestIdentity {
    /// `EventId`.
    pub(crate) event_id: i64,
    /// The path route the call arrived on.
    pub(crate) route: Route,
    /// The classified operation (create / delete, subscription / add-on).
    pub(crate) operation: ApprovalOperation,
    /// The subscription: `SubscriptionID` of a subscription entity, `EntityParentId` of an add-on entity.
    pub(crate) subscription_id: Option<String>,
    /// `AddOnId` of an add-on entity.
    pub(crate) add_on_id: Option<String>,
    /// `PlanId` of a subscription entity.
    pub(crate) plan_id: Option<String>,
}

#[derive(Debug)]
enum Slot {
    /// Being decided. `ordered`: the entry still has its place in the eviction order (it loses it when it reaches
    /// the front undecided, and gets a new one when its answer is recorded).
    Pending {
        waiters: Vec<oneshot::Sender<Decision>>,
        expires: Instant,
        ordered: bool,
    },
    Done {
        decision: Decision,
        expires: Instant,
    },
}

#[derive(Debug)]
struct Entry {
    identity: RequestIdentity,
    generation: u64,
    slot: Slot,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        match &self.slot {
            Slot::Pending { .. } => true,
            Slot::Done { expires, .. } => *expires > now,
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
    /// Per `EventId`, the entries of each identity seen with it (almost always one).
    slots: EventIdMap<Vec<Entry>>,
    /// Entries held (answers and pending decisions).
    count: usize,
    /// Answers dropped before their window ended because the cache was full.
    evicted_early: u64,
    /// Eviction order: (expiry, event id, generation).
    order: VecDeque<(Instant, i64, u64)>,
    next_generation: u64,
}

impl Entries {
    fn find_mut(&mut self, event_id: i64, generation: u64) -> Option<&mut Entry> {
        self.slots.get_mut(&event_id)?.iter_mut().find(|e| e.generation == generation)
    }

    fn remove(&mut self, event_id: i64, generation: u64) {
        if let Some(list) = self.slots.get_mut(&event_id) {
            if let Some(pos) = list.iter().position(|e| e.generation == generation) {
                list.swap_remove(pos);
                self.count -= 1;
            }
            if list.is_empty() {
                self.slots.remove(&event_id);
            }
        }
    }
}

type Shared = Arc<Mutex<Entries>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Entries> {
    // No code panics while holding this lock; a poisoned lock would still hold consistent maps.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the cache knows about a request.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Answered within the window: repeat this.
    Hit(Decision),
    /// Being decided by an earlier request: wait for its answer (an error = the decider vanished).
    Wait(oneshot::Receiver<Decision>),
    /// New: decide it and report through the ticket.
    Miss(Ticket),
}

/// The right (and duty) to decide one request. Dropping it unfinished wakes the waiters with an error and lets the
/// next resend decide again.
#[derive(Debug)]
pub(crate) struct Ticket {
    event_id: i64,
    generation: u64,
    /// The `EventId` is held (answered or being decided) for another request identity.
    conflict: bool,
    shared: Option<Shared>,
}

impl Ticket {
    /// Whether the cache holds the same `EventId` for a different request (logged as a conflict by the caller).
    pub(crate) fn is_conflict(&self) -> bool {
        self.conflict
    }

    /// Records the answer and wakes the requests waiting for it.
    pub(crate) fn finish(mut self, decision: &Decision) {
        let Some(shared) = self.shared.take() else { return };
        let mut entries = lock(&shared);
        let (event_id, generation) = (self.event_id, self.generation);
        let Some(entry) = entries.find_mut(event_id, generation) else { return };
        let Slot::Pending { waiters, expires, ordered } = &mut entry.slot else { return };
        let waiters = std::mem::take(waiters);
        let (expires, ordered) = (*expires, *ordered);
        entry.slot = Slot::Done { decision: decision.clone(), expires };
        if !ordered {
            // It lost its place while being decided: the answer is now evictable like any other.
            entries.order.push_back((expires, event_id, generation));
        }
        drop(entries);
        for waiter in waiters {
            let _ = waiter.send(decision.clone());
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut entries = lock(&shared);
            let pending_here = matches!(
                entries.find_mut(self.event_id, self.generation),
                Some(Entry { slot: Slot::Pending { .. }, .. })
            );
            if pending_here {
                // Dropping the entry drops the waiters' senders: they learn that no answer will come.
                entries.remove(self.event_id, self.generation);
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

    /// Looks a request up at `now`, registering it as being decided on a miss.
    pub(crate) fn lookup_at(&self, identity: &RequestIdentity, now: Instant) -> Lookup {
        let event_id = identity.event_id;
        if self.window.is_zero() {
            return Lookup::Miss(Ticket { event_id, generation: 0, conflict: false, shared: None });
        }
        let mut entries = lock(&self.shared);
        let mut conflict = false;
        let mut stale = None;
        if let Some(list) = entries.slots.get_mut(&event_id) {
            for entry in list.iter_mut() {
                if entry.identity != *identity {
                    conflict |= entry.is_live(now);
                    continue;
                }
                match &mut entry.slot {
                    Slot::Done { decision, expires } if *expires > now => return Lookup::Hit(decision.clone()),
                    Slot::Pending { waiters, .. } => {
                        let (sender, receiver) = oneshot::channel();
                        waiters.push(sender);
                        return Lookup::Wait(receiver);
                    }
                    Slot::Done { .. } => stale = Some(entry.generation),
                }
            }
        }
        if let Some(generation) = stale {
            entries.remove(event_id, generation);
        }
        purge(&mut entries, now, self.capacity);
        let generation = entries.next_generation;
        entries.next_generation += 1;
        let expires = now + self.window;
        let entry = Entry {
            identity: identity.clone(),
            generation,
            slot: Slot::Pending { waiters: Vec::new(), expires, ordered: true },
        };
        entries.slots.entry(event_id).or_default().push(entry);
        entries.count += 1;
        entries.order.push_back((expires, event_id, generation));
        Lookup::Miss(Ticket { event_id, generation, conflict, shared: Some(self.shared.clone()) })
    }

    /// Entries held (answers and pending decisions).
    pub(crate) fn len(&self) -> usize {
        lock(&self.shared).count
    }
}

/// Drops expired answers, and the oldest answers while the cache is full. Entries still being decided are skipped
/// (they leave the order and rejoin it when answered), never dropped.
fn purge(entries: &mut Entries, now: Instant, capacity: usize) {
    while let Some(&(expires, event_id, generation)) = entries.order.front() {
        let full = entries.count >= capacity;
        if expires > now && !full {
            break;
        }
        entries.order.pop_front();
        let Some(entry) = entries.find_mut(event_id, generation) else { continue };
        if let Slot::Pending { ordered, .. } = &mut entry.slot {
            *ordered = false;
            continue;
        }
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
        entries.remove(event_id, generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(event_id: i64) -> RequestIdentity {
        RequestIdentity {
            event_id,
            route: Route::Subscriptions,
            operation: ApprovalOperation::CreateSubscription,
            subscription_id: Some(format!("sub-{event_id}")),
            add_on_id: None,
            plan_id: Some("gold".into()),
        }
    }

    impl DecisionCache {
        fn lookup(&self, event_id: i64) -> Lookup {
            self.lookup_at(&ident(event_id), Instant::now())
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

    #[tokio::test(start_paused = true)]
    async fn another_identity_with_a_known_event_id_is_a_conflict_decided_afresh() {
        let cache = DecisionCache::new(Duration::from_secs(600), 100);
        miss(&cache, 42).finish(&Decision::Approve);
        let variants = [
            RequestIdentity { route: Route::SubscriptionAddons, ..ident(42) },
            RequestIdentity { operation: ApprovalOperation::DeleteSubscription, ..ident(42) },
            RequestIdentity { subscription_id: Some("other".into()), ..ident(42) },
            RequestIdentity { plan_id: Some("not-sold".into()), ..ident(42) },
            RequestIdentity { add_on_id: Some("addon".into()), ..ident(42) },
        ];
        for (i, variant) in variants.iter().enumerate() {
            match cache.lookup_at(variant, Instant::now()) {
                Lookup::Miss(ticket) => {
                    assert!(ticket.is_conflict(), "variant {i}");
                    ticket.finish(&Decision::deny(format!("variant {i}")));
                }
                other => panic!("variant {i} must be decided afresh, got {other:?}"),
            }
        }
        // Each identity keeps its own answer.
        assert!(matches!(cache.lookup(42), Lookup::Hit(Decision::Approve)));
        for (i, variant) in variants.iter().enumerate() {
            match cache.lookup_at(variant, Instant::now()) {
                Lookup::Hit(Decision::Deny { reason }) => assert_eq!(reason, format!("variant {i}")),
                other => panic!("variant {i}: {other:?}"),
            }
        }
        assert_eq!(cache.len(), 6);
        // A new event id is no conflict.
        assert!(!miss(&cache, 43).is_conflict());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_never_evicts_a_decision_in_flight() {
        let cache = DecisionCache::new(Duration::from_secs(600), 3);
        let in_flight = miss(&cache, 1);
        for id in 2..20 {
            miss(&cache, id).finish(&Decision::Approve);
        }
        // The duplicate of event 1 still waits for the first decision, instead of deciding again.
        let Lookup::Wait(waiter) = cache.lookup(1) else { panic!("the pending decision was evicted") };
        in_flight.finish(&Decision::Approve);
        assert_eq!(waiter.await.unwrap(), Decision::Approve);
        assert!(matches!(cache.lookup(1), Lookup::Hit(Decision::Approve)));
        // Once answered it is evictable again, and the bound holds.
        for id in 100..110 {
            miss(&cache, id).finish(&Decision::Approve);
        }
        assert!(cache.len() <= 3, "{}", cache.len());
        assert!(matches!(cache.lookup(1), Lookup::Miss(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn pending_decisions_may_exceed_the_capacity_but_answers_do_not() {
        let cache = DecisionCache::new(Duration::from_secs(600), 2);
        let tickets: Vec<Ticket> = (1..=5).map(|id| miss(&cache, id)).collect();
        assert_eq!(cache.len(), 5, "all five are being decided: none dropped");
        for t in tickets {
            t.finish(&Decision::Approve);
        }
        miss(&cache, 6).finish(&Decision::Approve);
        assert!(cache.len() <= 2, "{}", cache.len());
    }
}
