//! The journaled delivery path against a billing double that cannot deduplicate (every call appends): a call that
//! fails after committing is reconciled, not repeated; an open intent left by a crash is reconciled before anything
//! is sent; `Unknown` halts the processor in doubt and an operator resolves it (applied / send again / skip,
//! audited); usage aggregated per meter; events on the journaled path. Tokio's paused clock, real SQLite files.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use wap_billing_engine::{
    AuditAction, Delivery, EntityChange, EventContext, EventHandler, Fence, HaltReason, HandlerError,
    InDoubtResolution, Intent, Phase, ProcessedOutcome, ProcessorKind, Reconciliation, StateStore, UsageBatch,
    UsageHandler, UsageLines, UsagePeriod, UsageShape,
};
use wap_types::{FeedKind, Plan};

const LONG: Duration = Duration::from_secs(30 * 86_400);

/// How the double's `reconcile` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// By token: none → NotApplied, one → Applied.
    ByToken,
    Unknown,
}

/// A line as received: subscription, quantity, records, first and last `EventId`.
type LineSeen = (String, f64, u64, i64, i64);

/// Appends every call (a repeat bills twice); can fail after committing; reconciles by token.
#[derive(Debug)]
struct NonDedup {
    shape: UsageShape,
    /// Tokens of the calls, in order (usage and events).
    tokens: Mutex<Vec<String>>,
    /// Usage ids billed, with repeats.
    billed: Mutex<Vec<i64>>,
    /// Lines received (PerMeter).
    lines: Mutex<Vec<LineSeen>>,
    /// Event ids billed, with repeats.
    events: Mutex<Vec<i64>>,
    /// Call numbers (1-based over all calls) that commit and then fail.
    fail_after_commit: Mutex<HashSet<u32>>,
    /// Call numbers refused before committing anything.
    refuse: Mutex<HashSet<u32>>,
    /// The next this many calls are refused before committing anything.
    refuse_next: Mutex<u32>,
    lookup: Mutex<Lookup>,
    calls: Mutex<u32>,
    reconciles: Mutex<Vec<Intent>>,
}

impl NonDedup {
    fn new(shape: UsageShape) -> Arc<Self> {
        Arc::new(NonDedup {
            shape,
            tokens: Mutex::default(),
            billed: Mutex::default(),
            lines: Mutex::default(),
            events: Mutex::default(),
            fail_after_commit: Mutex::default(),
            refuse: Mutex::default(),
            refuse_next: Mutex::new(0),
            lookup: Mutex::new(Lookup::ByToken),
            calls: Mutex::new(0),
            reconciles: Mutex::default(),
        })
    }

    fn call(&self, token: String, commit: impl FnOnce()) -> Result<(), HandlerError> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c
        };
        let refuse_next = {
            let mut r = self.refuse_next.lock().unwrap();
            let refuse = *r > 0;
            *r = r.saturating_sub(1);
            refuse
        };
        if refuse_next || self.refuse.lock().unwrap().contains(&n) {
            return Err(HandlerError::failed("connection reset (nothing committed)"));
        }
        commit();
        self.tokens.lock().unwrap().push(token);
        if self.fail_after_commit.lock().unwrap().contains(&n) {
            return Err(HandlerError::failed("timed out (after committing)"));
        }
        Ok(())
    }

    fn answer(&self, intent: &Intent) -> Reconciliation {
        self.reconciles.lock().unwrap().push(intent.clone());
        match *self.lookup.lock().unwrap() {
            Lookup::Unknown => Reconciliation::unknown("the billing API cannot be searched"),
            Lookup::ByToken => match self.tokens.lock().unwrap().iter().filter(|t| **t == intent.token).count() {
                0 => Reconciliation::NotApplied,
                1 => Reconciliation::Applied,
                n => Reconciliation::unknown(format!("{n} lines carry {}", intent.token)),
            },
        }
    }

    fn billed(&self) -> Vec<i64> {
        self.billed.lock().unwrap().clone()
    }
}

#[async_trait]
impl UsageHandler for NonDedup {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        let token = Intent::default_token(FeedKind::Usage, batch.first_event_id(), batch.last_event_id());
        self.call(token, || self.billed.lock().unwrap().extend(batch.records.iter().map(|r| r.event_id)))
    }
    fn delivery(&self) -> Delivery {
        Delivery::Journaled
    }
    fn usage_shape(&self) -> UsageShape {
        self.shape
    }
    async fn apply_usage_lines(&self, lines: UsageLines<'_>) -> Result<(), HandlerError> {
        let token = Intent::default_token(FeedKind::Usage, lines.first_event_id(), lines.last_event_id());
        self.call(token, || {
            self.billed.lock().unwrap().extend(lines.records.iter().map(|r| r.event_id));
            self.lines.lock().unwrap().extend(
                lines
                    .lines
                    .iter()
                    .map(|l| (l.subscription_id.clone(), l.quantity, l.records, l.first_event_id, l.last_event_id)),
            );
        })
    }
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        Ok(self.answer(intent))
    }
}

#[async_trait]
impl EventHandler for NonDedup {
    async fn plan(&self, ctx: &EventContext<'_>, _: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        let token = Intent::default_token(ctx.key.feed, ctx.key.event_id, ctx.key.event_id);
        self.call(token, || self.events.lock().unwrap().push(ctx.key.event_id))
    }
    fn delivery(&self) -> Delivery {
        Delivery::Journaled
    }
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        Ok(self.answer(intent))
    }
}

fn usage_source(ids: std::ops::RangeInclusive<i64>) -> wap_billing_engine::MemorySource {
    let source = wap_billing_engine::MemorySource::new();
    source.extend(ids.map(|id| usage(id, if id % 2 == 0 { "SUB-A" } else { "sub-b" })));
    source
}

/// Leaves an open intent as a crashed instance would (its lease released here, as if it had expired).
async fn crashed_with_open_intent(store: &Arc<dyn StateStore>, first: i64, last: i64) {
    let processor = ProcessorKind::Usage;
    let lease = store.try_acquire_lease(processor, "crashed", Duration::from_secs(1), true).await.unwrap().unwrap();
    let fence = Fence { processor, holder: "crashed".into(), generation: lease.generation };
    store.open_intent(&fence, &open_intent(processor, FeedKind::Usage, first, last, fence.generation)).await.unwrap();
    store.release_lease(&fence).await.unwrap();
}

fn open_intent(processor: ProcessorKind, feed: FeedKind, first: i64, last: i64, generation: i64) -> Intent {
    Intent {
        processor,
        feed,
        first_event_id: first,
        last_event_id: last,
        records: (last - first + 1) as u64,
        operation: "usage".into(),
        token: Intent::default_token(feed, first, last),
        generation,
        opened_at: chrono::Utc::now(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_fails_after_committing_is_reconciled_as_applied_and_never_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = usage_source(1..=30);
    let billing = NonDedup::new(UsageShape::PerRecord);
    billing.fail_after_commit.lock().unwrap().insert(1);
    // A call refused before committing is reconciled as not applied and retried.
    billing.refuse.lock().unwrap().insert(3);
    let config = config().batch_size(10).build().unwrap();

    let running = spawn_usage(&config, &source, &store, billing.clone());
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.last_committed() == Some(30)).await;
    assert_eq!(billing.billed(), (1..=30).collect::<Vec<_>>(), "each record billed exactly once");
    assert_eq!(status.applied(), 30);
    let reconciled: Vec<_> = billing.reconciles.lock().unwrap().iter().map(|i| i.token.clone()).collect();
    assert_eq!(reconciled, vec!["wap-usage-1-10", "wap-usage-21-30"], "each failed call reconciled once");
    assert_eq!(store.intent(ProcessorKind::Usage).await.unwrap(), None, "no intent left open");
    let rows = store.processed(FeedKind::Usage, 0, i64::MAX).await.unwrap();
    let ranges: Vec<_> = rows.iter().map(|r| (r.event_id, r.last_event_id, r.outcome)).collect();
    assert_eq!(
        ranges,
        vec![
            (1, 10, ProcessedOutcome::Applied),
            (11, 20, ProcessedOutcome::Applied),
            (21, 30, ProcessedOutcome::Applied)
        ]
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_open_intent_left_by_a_crash_is_reconciled_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = usage_source(1..=20);
    let config = config().batch_size(10).build().unwrap();

    // A crashed instance billed 1..=10 and died before its commit: the intent is open, the billing system has it.
    let billing = NonDedup::new(UsageShape::PerRecord);
    crashed_with_open_intent(&store, 1, 10).await;
    billing.call("wap-usage-1-10".into(), || billing.billed.lock().unwrap().extend(1..=10)).unwrap();

    let running = spawn_usage(&config, &source, &store, billing.clone());
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.last_committed() == Some(20)).await;
    assert_eq!(billing.billed(), (1..=20).collect::<Vec<_>>(), "1..=10 reconciled as applied, not sent again");
    assert_eq!(status.intents_reconciled, 1);
    assert_eq!(status.applied(), 20, "the reconciled range counts as applied");
    running.stop().await;

    // Another crash left 21..=30 open, but the billing system never got it: reconciled as not applied, sent again.
    source.extend((21..=30).map(|id| usage(id, "sub-c")));
    crashed_with_open_intent(&store, 21, 30).await;
    let running = spawn_usage(&config, &source, &store, billing.clone());
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.last_committed() == Some(30)).await;
    assert_eq!(billing.billed(), (1..=30).collect::<Vec<_>>());
    assert_eq!(status.intents_reconciled, 1);
    assert_eq!(store.intent(ProcessorKind::Usage).await.unwrap(), None);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unknown_halts_in_doubt_naming_the_intent_and_the_operator_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = usage_source(1..=40);
    let config = config().batch_size(10).build().unwrap();
    let billing = NonDedup::new(UsageShape::PerRecord);
    *billing.lookup.lock().unwrap() = Lookup::Unknown;

    // Open intent 1..=10 that the billing system does hold, but cannot be searched for.
    crashed_with_open_intent(&store, 1, 10).await;
    billing.call("wap-usage-1-10".into(), || billing.billed.lock().unwrap().extend(1..=10)).unwrap();

    let running = spawn_usage(&config, &source, &store, billing.clone());
    let status = wait_status(&running.handle, LONG, "in doubt", |s| s.phase == Phase::Halted).await;
    assert!(status.is_in_doubt(), "{status:?}");
    let halt = status.halt.clone().unwrap();
    assert_eq!(
        (halt.reason.clone(), halt.feed, halt.event_id, halt.last_event_id),
        (HaltReason::InDoubt, FeedKind::Usage, 1, 10)
    );
    assert!(halt.error.contains("wap-usage-1-10") && halt.error.contains("cannot be searched"), "{}", halt.error);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(billing.billed(), (1..=10).collect::<Vec<_>>(), "nothing is sent while in doubt");

    // A plain resume asks the handler again: still unknown, still in doubt.
    let asked = billing.reconciles.lock().unwrap().len();
    running.handle.resume("ana").await.unwrap();
    let again = tokio::time::timeout(LONG, running.handle.sync_once()).await.unwrap();
    assert!(again.is_in_doubt(), "{again:?}");
    assert_eq!(billing.reconciles.lock().unwrap().len(), asked + 1, "asked once more");
    assert_eq!(again.halt.as_ref().map(|h| h.event_id), Some(1));

    // The operator finds the lines in the billing system: applied. Recorded, audited, and the rest flows.
    *billing.lookup.lock().unwrap() = Lookup::ByToken;
    let intent =
        running.handle.resolve_in_doubt(InDoubtResolution::Applied, "ana", "lines found in WHMCS").await.unwrap();
    assert_eq!((intent.first_event_id, intent.last_event_id), (1, 10));
    wait_status(&running.handle, LONG, "caught up", |s| s.last_committed() == Some(40)).await;
    assert_eq!(billing.billed(), (1..=40).collect::<Vec<_>>(), "applied: not sent again");
    let audit = wap_billing_engine::Operator::new(store.clone()).audit_log(10).await.unwrap();
    let resolve = audit.iter().find(|e| e.action == AuditAction::Resolve).expect("audited");
    assert_eq!((resolve.actor.as_str(), resolve.event_id), ("ana", Some(1)));
    assert!(
        resolve.detail.contains("applied") && resolve.detail.contains("lines found in WHMCS"),
        "{}",
        resolve.detail
    );
    assert!(audit.iter().any(|e| e.action == AuditAction::Halt && e.detail.contains("in_doubt")), "{audit:?}");

    // send again: the operator found nothing; the records go out once more.
    source.extend((41..=50).map(|id| usage(id, "sub-c")));
    *billing.lookup.lock().unwrap() = Lookup::Unknown;
    billing.fail_after_commit.lock().unwrap().clear();
    *billing.refuse_next.lock().unwrap() = 1;
    running.handle.wake();
    wait_status(&running.handle, LONG, "in doubt on 41..=50", |s| s.halt.as_ref().is_some_and(|h| h.event_id == 41))
        .await;
    assert_eq!(billing.billed().len(), 40, "a refused call was not billed");
    running.handle.resolve_in_doubt(InDoubtResolution::SendAgain, "ana", "not in WHMCS").await.unwrap();
    wait_status(&running.handle, LONG, "caught up", |s| s.last_committed() == Some(50)).await;
    assert_eq!(billing.billed(), (1..=50).collect::<Vec<_>>());

    // skip: never sent; recorded as skipped_by_operator.
    source.extend((51..=60).map(|id| usage(id, "sub-c")));
    *billing.refuse_next.lock().unwrap() = 1;
    running.handle.wake();
    wait_status(&running.handle, LONG, "in doubt on 51..=60", |s| s.halt.as_ref().is_some_and(|h| h.event_id == 51))
        .await;
    running.handle.resolve_in_doubt(InDoubtResolution::Skip, "ana", "billed by hand").await.unwrap();
    let done = tokio::time::timeout(LONG, running.handle.sync_once()).await.unwrap();
    assert_eq!((done.phase, done.halt.clone()), (Phase::CaughtUp, None));
    assert_eq!(store.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(60));
    assert_eq!(billing.billed(), (1..=50).collect::<Vec<_>>(), "skipped records are never sent");
    let rows = store.processed(FeedKind::Usage, 51, 60).await.unwrap();
    assert_eq!(rows[0].outcome, ProcessedOutcome::SkippedByOperator);
    assert_eq!(store.intent(ProcessorKind::Usage).await.unwrap(), None);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn per_meter_lines_carry_their_contributing_range_and_the_intent_covers_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = usage_source(1..=20);
    let config = config().batch_size(10).build().unwrap();
    let billing = NonDedup::new(UsageShape::PerMeter { period: UsagePeriod::Month });
    billing.fail_after_commit.lock().unwrap().insert(2);

    let running = spawn_usage(&config, &source, &store, billing.clone());
    wait_status(&running.handle, LONG, "caught up", |s| s.last_committed() == Some(20)).await;
    let lines = billing.lines.lock().unwrap().clone();
    // Two batches, two subscriptions each: one line per subscription per batch (one meter, one month).
    assert_eq!(
        lines,
        vec![
            ("sub-a".to_owned(), 5.0, 5, 2, 10),
            ("sub-b".to_owned(), 5.0, 5, 1, 9),
            ("sub-a".to_owned(), 5.0, 5, 12, 20),
            ("sub-b".to_owned(), 5.0, 5, 11, 19),
        ]
    );
    assert_eq!(
        *billing.tokens.lock().unwrap(),
        vec!["wap-usage-1-10", "wap-usage-11-20"],
        "one call per batch, none repeated"
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn events_on_the_journaled_path_are_reconciled_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = wap_billing_engine::MemorySource::new();
    source.extend((1..=5).map(ack_plan));
    let billing = NonDedup::new(UsageShape::PerRecord);
    billing.fail_after_commit.lock().unwrap().extend([2, 4]);
    let config = config().build().unwrap();

    let running = spawn_events(&config, &source, &store, billing.clone());
    wait_status(&running.handle, LONG, "caught up", |s| {
        s.feed(FeedKind::Plans).and_then(|f| f.last_committed) == Some(5)
    })
    .await;
    assert_eq!(*billing.events.lock().unwrap(), vec![1, 2, 3, 4, 5], "each event billed once");
    let ops: Vec<_> =
        billing.reconciles.lock().unwrap().iter().map(|i| (i.token.clone(), i.operation.clone())).collect();
    assert_eq!(
        ops,
        vec![
            ("wap-plans-2-2".to_owned(), "plans.POST".to_owned()),
            ("wap-plans-4-4".to_owned(), "plans.POST".to_owned())
        ]
    );
    running.stop().await;
}

/// Idempotent handlers keep today's path: no intent is ever written.
#[tokio::test(start_paused = true)]
async fn the_idempotent_path_writes_no_intent() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = usage_source(1..=20);
    let seen: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    struct Idem(Arc<Mutex<HashMap<i64, u32>>>, Arc<dyn StateStore>);
    #[async_trait]
    impl UsageHandler for Idem {
        async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
            assert_eq!(self.1.intent(ProcessorKind::Usage).await.unwrap(), None, "no intent during the call");
            for r in batch.records {
                *self.0.lock().unwrap().entry(r.event_id).or_default() += 1;
            }
            Ok(())
        }
    }
    let config = config().batch_size(10).build().unwrap();
    let running = spawn_usage(&config, &source, &store, Arc::new(Idem(seen.clone(), store.clone())));
    wait_status(&running.handle, LONG, "caught up", |s| s.last_committed() == Some(20)).await;
    assert_eq!(seen.lock().unwrap().len(), 20);
    running.stop().await;
}
