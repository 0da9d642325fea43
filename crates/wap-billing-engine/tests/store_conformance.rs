//! One conformance suite for every `StateStore` backend: SQLite (temporary files) always, PostgreSQL when
//! `WAP_BILLING_TEST_POSTGRES_URL` is set (each test in its own fresh schema, so tests run in parallel).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures_util::future::BoxFuture;
use wap_billing_engine::store::migrations::LATEST_VERSION;
use wap_billing_engine::{
    AuditAction, EventCommit, FeedHold, Fence, HaltReason, HaltStatus, HaltTarget, IdentityKind, InDoubtResolution,
    Intent, Operator, ProcessedOutcome, ProcessorKind, StateStore, StoreError,
};
use wap_types::FeedKind;

type Opener = Box<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn StateStore>, StoreError>> + Send + Sync>;

/// Two connections to one fresh database, and a way to open more.
struct Backend {
    a: Arc<dyn StateStore>,
    b: Arc<dyn StateStore>,
    open: Opener,
    /// Marks the database as written by a future engine (schema version 99).
    poison: BoxFuture<'static, ()>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite(_test: &str) -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let p = path.clone();
    let open: Opener = Box::new(move || {
        let p = p.clone();
        Box::pin(async move { Ok(Arc::new(wap_billing_engine::SqliteStore::open(&p).await?) as Arc<dyn StateStore>) })
    });
    let a = open().await.unwrap();
    let b = open().await.unwrap();
    let poison = Box::pin(async move {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("INSERT INTO schema_version (version, description, applied_at_ms) VALUES (99, 'future', 0)", [])
            .unwrap();
    });
    Some(Backend { a, b, open, poison, _dir: Some(dir) })
}

async fn postgres(test: &str) -> Backend {
    let url = common::postgres_url();
    let schema = common::fresh_schema(test);
    let (u, s) = (url.clone(), schema.clone());
    let open: Opener = Box::new(move || {
        let (u, s) = (u.clone(), s.clone());
        Box::pin(async move {
            Ok(Arc::new(wap_billing_engine::PostgresStore::connect_in_schema(&u, &s).await?) as Arc<dyn StateStore>)
        })
    });
    let a = open().await.expect("connect to WAP_BILLING_TEST_POSTGRES_URL");
    let b = open().await.unwrap();
    let poison = Box::pin(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "INSERT INTO \"{schema}\".schema_version (version, description, applied_at_ms) VALUES (99, 'future', 0)"
            ))
            .await
            .unwrap();
    });
    Backend { a, b, open, poison, _dir: None }
}

fn t(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap()
}

fn commit(feed: FeedKind, first: i64, last: i64, outcome: ProcessedOutcome) -> EventCommit {
    EventCommit { feed, first_event_id: first, last_event_id: last, outcome, at: t(first) }
}

async fn lead(store: &Arc<dyn StateStore>, processor: ProcessorKind, holder: &str) -> Fence {
    let lease = store
        .try_acquire_lease(processor, holder, Duration::from_secs(60), false)
        .await
        .unwrap()
        .expect("lease is free");
    Fence { processor, holder: holder.to_owned(), generation: lease.generation }
}

fn halt(feed: FeedKind, event_id: i64, last: i64, reason: HaltReason) -> HaltStatus {
    HaltStatus {
        processor: ProcessorKind::for_feed(feed),
        feed,
        event_id,
        last_event_id: last,
        reason,
        error: "billing system refused: 500".into(),
        attempts: 5,
        halted_at: t(99),
    }
}

// ---------------- the suite ----------------

async fn migrations_are_versioned_and_idempotent(b: Backend) {
    assert_eq!(b.a.schema_version().await.unwrap(), LATEST_VERSION);
    let fence = lead(&b.a, ProcessorKind::Notification, "one").await;
    b.a.commit(&fence, &commit(FeedKind::Plans, 7, 7, ProcessedOutcome::Applied)).await.unwrap();
    // Opening again migrates nothing and keeps the data.
    let again = (b.open)().await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), LATEST_VERSION);
    assert_eq!(again.cursor(FeedKind::Plans).await.unwrap().last_event_id, Some(7));
    // A database from a newer engine is refused.
    b.poison.await;
    match (b.open)().await {
        Err(StoreError::SchemaTooNew { found: 99, supported }) => assert_eq!(supported, LATEST_VERSION),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

async fn commits_move_the_cursor_forward_with_a_processed_record(b: Backend) {
    let s = &b.a;
    let empty = s.cursor(FeedKind::Usage).await.unwrap();
    assert_eq!((empty.last_event_id, empty.last_poll_at, empty.hold), (None, None, None));
    s.record_poll(FeedKind::Usage, t(5)).await.unwrap();
    assert_eq!(s.cursor(FeedKind::Usage).await.unwrap().last_poll_at, Some(t(5)));

    let fence = lead(s, ProcessorKind::Usage, "one").await;
    s.commit(&fence, &commit(FeedKind::Usage, 10, 19, ProcessedOutcome::Applied)).await.unwrap();
    s.commit(&fence, &commit(FeedKind::Usage, 25, 30, ProcessedOutcome::Applied)).await.unwrap();
    let cursor = s.cursor(FeedKind::Usage).await.unwrap();
    assert_eq!((cursor.last_event_id, cursor.last_poll_at), (Some(30), Some(t(5))));
    // Never backwards.
    s.commit(&fence, &commit(FeedKind::Usage, 3, 3, ProcessedOutcome::Applied)).await.unwrap();
    assert_eq!(s.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(30));
    // Range queries see rows overlapping the range, including one that starts before it.
    let rows = s.processed(FeedKind::Usage, 15, 26).await.unwrap();
    assert_eq!(rows.iter().map(|r| (r.event_id, r.last_event_id)).collect::<Vec<_>>(), vec![(10, 19), (25, 30)]);
    assert!(rows[0].covers(15) && !rows[0].covers(20));
    assert_eq!(rows[0].processed_at, t(10));
    assert!(s.processed(FeedKind::Usage, 20, 24).await.unwrap().is_empty());
    assert!(s.processed(FeedKind::Plans, 0, 100).await.unwrap().is_empty(), "per feed");
    // The other connection sees it all.
    assert_eq!(b.b.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(30));
}

async fn a_deposed_leader_cannot_write(b: Backend) {
    let old = lead(&b.a, ProcessorKind::Notification, "old").await;
    b.a.commit(&old, &commit(FeedKind::Plans, 1, 1, ProcessedOutcome::Applied)).await.unwrap();
    let new = b.b.try_acquire_lease(ProcessorKind::Notification, "new", Duration::from_secs(60), true).await.unwrap();
    let new = new.expect("steal always acquires");
    assert_eq!(new.generation, old.generation + 1, "acquisition bumps the generation");

    let refused = b.a.commit(&old, &commit(FeedKind::Plans, 2, 2, ProcessedOutcome::Applied)).await;
    assert!(matches!(refused, Err(StoreError::Fenced { generation, .. }) if generation == old.generation));
    assert!(refused.unwrap_err().is_fenced());
    let hold = FeedHold { event_id: 2, since: t(0) };
    assert!(b.a.set_hold(&old, FeedKind::Plans, Some(hold)).await.unwrap_err().is_fenced());
    let refused = b.a.set_identity_fenced(&old, IdentityKind::Plan, "gold", "B-1", t(1)).await;
    assert!(refused.unwrap_err().is_fenced(), "identity-map writes by a deposed leader's handler are refused");
    assert!(b.a.delete_identity_fenced(&old, IdentityKind::Plan, "gold", t(1)).await.unwrap_err().is_fenced());
    assert_eq!(b.a.identity(IdentityKind::Plan, "gold").await.unwrap(), None);
    assert!(b.a.set_halt(&old, &halt(FeedKind::Plans, 2, 2, HaltReason::HandlerFailed)).await.unwrap_err().is_fenced());
    assert!(!b.a.renew_lease(&old, Duration::from_secs(60)).await.unwrap(), "renewal refused");
    b.a.release_lease(&old).await.unwrap();

    let cursor = b.a.cursor(FeedKind::Plans).await.unwrap();
    assert_eq!((cursor.last_event_id, cursor.hold), (Some(1), None), "nothing written by the deposed leader");
    assert!(b.a.processed(FeedKind::Plans, 2, 2).await.unwrap().is_empty());
    assert_eq!(b.a.halt(ProcessorKind::Notification).await.unwrap(), None);
    let lease = b.a.lease(ProcessorKind::Notification).await.unwrap().unwrap();
    assert_eq!(
        (lease.holder.as_deref(), lease.generation),
        (Some("new"), new.generation),
        "release by the old one is a no-op"
    );
    // The new leader writes fine.
    let fence = Fence { processor: ProcessorKind::Notification, holder: "new".into(), generation: new.generation };
    b.b.commit(&fence, &commit(FeedKind::Plans, 2, 2, ProcessedOutcome::Applied)).await.unwrap();
}

async fn leases_expire_renew_and_release(b: Backend) {
    let ttl = Duration::from_millis(300);
    let p = ProcessorKind::Usage;
    let first = b.a.try_acquire_lease(p, "a", ttl, false).await.unwrap().unwrap();
    assert_eq!(b.b.try_acquire_lease(p, "b", ttl, false).await.unwrap(), None, "live lease of another holder");
    let fence_a = Fence { processor: p, holder: "a".into(), generation: first.generation };
    assert!(b.a.renew_lease(&fence_a, ttl).await.unwrap());
    let renewed = b.a.lease(p).await.unwrap().unwrap();
    assert!(renewed.expires_at >= first.expires_at);

    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(!b.a.renew_lease(&fence_a, ttl).await.unwrap(), "an expired lease is not renewed");
    let second = b.b.try_acquire_lease(p, "b", ttl, false).await.unwrap().expect("expired lease is taken over");
    assert_eq!(second.generation, first.generation + 1);
    assert_eq!(second.holder.as_deref(), Some("b"));

    let fence_b = Fence { processor: p, holder: "b".into(), generation: second.generation };
    b.b.release_lease(&fence_b).await.unwrap();
    let third = b.a.try_acquire_lease(p, "a", Duration::from_secs(60), false).await.unwrap();
    assert_eq!(third.map(|l| l.generation), Some(second.generation + 1), "a released lease is free at once");
    // A live lease held under the same name is not taken again: that is a second process with the same
    // InstanceId, and taking it would depose it (the elector reports the conflict instead).
    assert_eq!(b.a.try_acquire_lease(p, "a", Duration::from_secs(60), false).await.unwrap(), None);
    assert_eq!(b.a.lease(p).await.unwrap().unwrap().generation, second.generation + 1, "generation unchanged");
    // The two processors have separate leases.
    assert!(b.b.try_acquire_lease(ProcessorKind::Notification, "b", ttl, false).await.unwrap().is_some());
}

async fn concurrent_acquisitions_elect_exactly_one(b: Backend) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { Arc::clone(&b.a) } else { Arc::clone(&b.b) };
        tasks.push(tokio::spawn(async move {
            store
                .try_acquire_lease(ProcessorKind::Notification, &format!("c{i}"), Duration::from_secs(60), false)
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(lease) = t.await.unwrap() {
            winners.push(lease);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    assert_eq!(b.a.lease(ProcessorKind::Notification).await.unwrap().unwrap(), winners[0]);
}

async fn halts_resume_and_skip_are_stored_and_audited(b: Backend) {
    let s = &b.a;
    let fence = lead(s, ProcessorKind::Usage, "engine-1").await;
    s.commit(&fence, &commit(FeedKind::Usage, 1, 9, ProcessedOutcome::Applied)).await.unwrap();
    assert!(matches!(s.resume(ProcessorKind::Usage, None, "ops", t(1)).await, Err(StoreError::NotHalted { .. })));
    assert!(matches!(s.skip(ProcessorKind::Usage, None, "ops", "x", t(1)).await, Err(StoreError::NotHalted { .. })));

    let h = halt(FeedKind::Usage, 10, 14, HaltReason::HandlerFailed);
    s.set_halt(&fence, &h).await.unwrap();
    assert_eq!(b.b.halt(ProcessorKind::Usage).await.unwrap(), Some(h.clone()), "visible to every instance");
    assert_eq!(s.halt(ProcessorKind::Notification).await.unwrap(), None, "per processor");
    // A command naming another event than the halted one changes nothing.
    let stale = HaltTarget { feed: FeedKind::Usage, event_id: 9 };
    let refused = s.skip(ProcessorKind::Usage, Some(stale), "ops-1", "stale view", t(2)).await;
    assert!(matches!(refused, Err(StoreError::HaltMismatch { .. })), "{refused:?}");
    let refused = s.resume(ProcessorKind::Usage, Some(stale), "ops-1", t(2)).await;
    assert!(matches!(refused, Err(StoreError::HaltMismatch { .. })), "{refused:?}");
    assert_eq!(s.halt(ProcessorKind::Usage).await.unwrap(), Some(h.clone()), "still halted");
    assert_eq!(s.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(9));
    assert_eq!(s.resume(ProcessorKind::Usage, Some(h.target()), "ops-1", t(2)).await.unwrap(), h);
    assert_eq!(s.halt(ProcessorKind::Usage).await.unwrap(), None);
    assert_eq!(s.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(9), "resume moves nothing");

    s.set_halt(&fence, &h).await.unwrap();
    assert_eq!(s.skip(ProcessorKind::Usage, Some(h.target()), "ops-2", "subscription deleted", t(3)).await.unwrap(), h);
    let again = s.skip(ProcessorKind::Usage, Some(h.target()), "ops-2", "retried request", t(3)).await;
    assert!(matches!(again, Err(StoreError::NotHalted { .. })), "a retried skip skips nothing more");
    assert_eq!(s.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(14), "skip moves past the range");
    let rows = s.processed(FeedKind::Usage, 10, 14).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].event_id, rows[0].last_event_id, rows[0].outcome),
        (10, 14, ProcessedOutcome::SkippedByOperator)
    );
    assert_eq!(s.halt(ProcessorKind::Usage).await.unwrap(), None);

    let audit = s.audit_log(10).await.unwrap();
    let summary: Vec<_> = audit.iter().map(|e| (e.action.clone(), e.actor.as_str(), e.event_id)).collect();
    assert_eq!(
        summary,
        vec![
            (AuditAction::Halt, "engine-1", Some(10)),
            (AuditAction::Resume, "ops-1", Some(10)),
            (AuditAction::Halt, "engine-1", Some(10)),
            (AuditAction::Skip, "ops-2", Some(10)),
        ]
    );
    assert!(audit[3].detail.contains("subscription deleted") && audit[3].detail.contains("10..=14"));
    assert_eq!(audit[3].processor, Some(ProcessorKind::Usage));
    assert_eq!(audit[3].at, t(3));
    assert!(audit.windows(2).all(|w| w[0].id < w[1].id));
    let newest = s.audit_log(2).await.unwrap();
    assert_eq!(newest.iter().map(|e| e.id).collect::<Vec<_>>(), vec![audit[2].id, audit[3].id], "newest, oldest first");
}

async fn holds_are_stored_dropped_at_commit_and_by_resume(b: Backend) {
    let s = &b.a;
    let fence = lead(s, ProcessorKind::Notification, "one").await;
    let hold = FeedHold { event_id: 5, since: t(42) };
    s.set_hold(&fence, FeedKind::Subscriptions, Some(hold)).await.unwrap();
    assert_eq!(b.b.cursor(FeedKind::Subscriptions).await.unwrap().hold, Some(hold));
    s.commit(&fence, &commit(FeedKind::Subscriptions, 4, 4, ProcessedOutcome::Applied)).await.unwrap();
    assert_eq!(s.cursor(FeedKind::Subscriptions).await.unwrap().hold, Some(hold), "a commit below keeps it");
    s.commit(&fence, &commit(FeedKind::Subscriptions, 5, 5, ProcessedOutcome::Applied)).await.unwrap();
    assert_eq!(s.cursor(FeedKind::Subscriptions).await.unwrap().hold, None, "committing the held event drops it");

    s.set_hold(&fence, FeedKind::Plans, Some(FeedHold { event_id: 8, since: t(1) })).await.unwrap();
    s.set_halt(&fence, &halt(FeedKind::Plans, 8, 8, HaltReason::PendingApprovalTimeout)).await.unwrap();
    let resumed = s.resume(ProcessorKind::Notification, None, "ops", t(2)).await.unwrap();
    assert_eq!(resumed.reason, HaltReason::PendingApprovalTimeout);
    assert_eq!(s.cursor(FeedKind::Plans).await.unwrap().hold, None, "resume makes the wait start again");
    s.set_hold(&fence, FeedKind::Plans, Some(FeedHold { event_id: 8, since: t(3) })).await.unwrap();
    s.set_hold(&fence, FeedKind::Plans, None).await.unwrap();
    assert_eq!(s.cursor(FeedKind::Plans).await.unwrap().hold, None);
}

async fn identity_mappings_are_edited_and_audited(b: Backend) {
    let s = &b.a;
    let sub = "90F94F4C-4679-406A-B6F4-4814D281B3FC";
    assert_eq!(s.identity(IdentityKind::Subscription, sub).await.unwrap(), None);
    s.set_identity(IdentityKind::Subscription, sub, "whmcs-17", "ops", t(1)).await.unwrap();
    let m = b.b.identity(IdentityKind::Subscription, &sub.to_lowercase()).await.unwrap().unwrap();
    assert_eq!((m.wap_id.as_str(), m.billing_id.as_str(), m.updated_at), (sub, "whmcs-17", t(1)), "GUID case ignored");
    assert_eq!(s.identity(IdentityKind::Plan, sub).await.unwrap(), None, "per kind");
    let back = s.identity_by_billing_id(IdentityKind::Subscription, "whmcs-17").await.unwrap().unwrap();
    assert_eq!(back.wap_id, sub);

    s.set_identity(IdentityKind::Subscription, sub, "whmcs-18", "ops", t(2)).await.unwrap();
    assert_eq!(s.identity(IdentityKind::Subscription, sub).await.unwrap().unwrap().billing_id, "whmcs-18");
    assert_eq!(s.identity_by_billing_id(IdentityKind::Subscription, "whmcs-17").await.unwrap(), None);
    s.set_identity(IdentityKind::Subscription, "aaa", "whmcs-1", "ops", t(3)).await.unwrap();
    let all = s.identities(IdentityKind::Subscription).await.unwrap();
    assert_eq!(all.iter().map(|m| m.billing_id.as_str()).collect::<Vec<_>>(), vec!["whmcs-18", "whmcs-1"]);

    assert!(s.delete_identity(IdentityKind::Subscription, sub, "ops", t(4)).await.unwrap());
    assert!(!s.delete_identity(IdentityKind::Subscription, sub, "ops", t(5)).await.unwrap());
    let audit = s.audit_log(10).await.unwrap();
    let actions: Vec<_> = audit.iter().map(|e| e.action.clone()).collect();
    assert_eq!(
        actions,
        vec![AuditAction::IdentitySet, AuditAction::IdentitySet, AuditAction::IdentitySet, AuditAction::IdentityDelete]
    );
    assert!(audit[1].detail.contains("whmcs-18") && audit[1].detail.contains("was whmcs-17"), "{}", audit[1].detail);
}

async fn operator_wrappers_and_cursor_listing(b: Backend) {
    let op = wap_billing_engine::Operator::new(Arc::clone(&b.a));
    let fence = lead(&b.a, ProcessorKind::Notification, "one").await;
    b.a.commit(&fence, &commit(FeedKind::Addons, 3, 3, ProcessedOutcome::Applied)).await.unwrap();
    let cursors = op.cursors().await.unwrap();
    assert_eq!(cursors.len(), 7);
    assert_eq!(cursors.iter().find(|c| c.feed == FeedKind::Addons).unwrap().last_event_id, Some(3));
    b.a.set_halt(&fence, &halt(FeedKind::Addons, 4, 4, HaltReason::HandlerFailed)).await.unwrap();
    assert_eq!(op.halt(ProcessorKind::Notification).await.unwrap().map(|h| h.event_id), Some(4));
    op.skip(ProcessorKind::Notification, "ops", "duplicate").await.unwrap();
    assert_eq!(op.audit_log(1).await.unwrap()[0].action, AuditAction::Skip);
}

fn intent(processor: ProcessorKind, feed: FeedKind, first: i64, last: i64, generation: i64) -> Intent {
    Intent {
        processor,
        feed,
        first_event_id: first,
        last_event_id: last,
        records: (last - first + 1) as u64,
        operation: "usage".into(),
        token: Intent::default_token(feed, first, last),
        generation,
        opened_at: t(first),
    }
}

async fn intents_are_journaled_fenced_and_resolved(b: Backend) {
    let usage = ProcessorKind::Usage;
    let fence = lead(&b.a, usage, "one").await;
    assert_eq!(b.a.intent(usage).await.unwrap(), None);
    // Opened durably, visible to another connection; a second open replaces it.
    let first = intent(usage, FeedKind::Usage, 1, 10, fence.generation);
    b.a.open_intent(&fence, &first).await.unwrap();
    assert_eq!(b.b.intent(usage).await.unwrap(), Some(first));
    let second = intent(usage, FeedKind::Usage, 1, 20, fence.generation);
    b.a.open_intent(&fence, &second).await.unwrap();
    assert_eq!(b.b.intent(usage).await.unwrap().as_ref(), Some(&second));
    assert_eq!(b.a.intent(ProcessorKind::Notification).await.unwrap(), None, "one intent per processor");
    // The outcome, the cursor and the removal in one transaction.
    b.a.commit_intent(&fence, &commit(FeedKind::Usage, 1, 20, ProcessedOutcome::Applied)).await.unwrap();
    assert_eq!(b.b.intent(usage).await.unwrap(), None);
    assert_eq!(b.b.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(20));
    // Closing (reconciled: not applied) moves nothing.
    b.a.open_intent(&fence, &intent(usage, FeedKind::Usage, 21, 30, fence.generation)).await.unwrap();
    b.a.close_intent(&fence).await.unwrap();
    assert_eq!(b.b.intent(usage).await.unwrap(), None);
    assert_eq!(b.b.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(20));

    // A deposed leader can neither open, commit nor close.
    let open = intent(usage, FeedKind::Usage, 21, 30, fence.generation);
    b.a.open_intent(&fence, &open).await.unwrap();
    let thief = b.b.try_acquire_lease(usage, "two", Duration::from_secs(60), true).await.unwrap().unwrap();
    let other = intent(usage, FeedKind::Usage, 31, 40, fence.generation);
    assert!(b.a.open_intent(&fence, &other).await.unwrap_err().is_fenced());
    assert!(b
        .a
        .commit_intent(&fence, &commit(FeedKind::Usage, 21, 30, ProcessedOutcome::Applied))
        .await
        .unwrap_err()
        .is_fenced());
    assert!(b.a.close_intent(&fence).await.unwrap_err().is_fenced());
    assert_eq!(b.b.intent(usage).await.unwrap(), Some(open.clone()), "the open intent survives for the next leader");

    // Resolution needs an in-doubt halt.
    let op = Operator::new(Arc::clone(&b.b));
    assert!(matches!(
        op.resolve_in_doubt(usage, InDoubtResolution::Applied, "ops", "checked").await,
        Err(StoreError::NotInDoubt { .. })
    ));
    let fence2 = Fence { processor: usage, holder: "two".into(), generation: thief.generation };
    let in_doubt = || halt(FeedKind::Usage, 21, 30, HaltReason::InDoubt);
    b.b.set_halt(&fence2, &in_doubt()).await.unwrap();
    // send again: only the intent and the halt go.
    let resolved = op.resolve_in_doubt(usage, InDoubtResolution::SendAgain, "ops", "not in WHMCS").await.unwrap();
    assert_eq!(resolved, open);
    assert_eq!(b.a.intent(usage).await.unwrap(), None);
    assert_eq!(b.a.halt(usage).await.unwrap(), None);
    assert_eq!(b.a.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(20));
    let entry = op.audit_log(1).await.unwrap().remove(0);
    assert_eq!((entry.action, entry.actor.as_str(), entry.event_id), (AuditAction::Resolve, "ops", Some(21)));
    assert!(entry.detail.contains("send_again") && entry.detail.contains("not in WHMCS"), "{}", entry.detail);
    assert!(entry.detail.contains(&open.token), "the audit names the intent: {}", entry.detail);
    // applied: recorded as applied, cursor moved.
    b.b.open_intent(&fence2, &intent(usage, FeedKind::Usage, 21, 30, thief.generation)).await.unwrap();
    b.b.set_halt(&fence2, &in_doubt()).await.unwrap();
    op.resolve_in_doubt(usage, InDoubtResolution::Applied, "ops", "found invoice line").await.unwrap();
    let rows = b.a.processed(FeedKind::Usage, 21, 30).await.unwrap();
    assert_eq!(
        (rows.len(), rows[0].event_id, rows[0].last_event_id, rows[0].outcome),
        (1, 21, 30, ProcessedOutcome::Applied)
    );
    assert_eq!(b.a.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(30));
    // skip: recorded as skipped_by_operator.
    b.b.open_intent(&fence2, &intent(usage, FeedKind::Usage, 31, 35, thief.generation)).await.unwrap();
    b.b.set_halt(&fence2, &halt(FeedKind::Usage, 31, 35, HaltReason::InDoubt)).await.unwrap();
    op.resolve_in_doubt(usage, InDoubtResolution::Skip, "ops", "billed by hand").await.unwrap();
    let rows = b.a.processed(FeedKind::Usage, 31, 35).await.unwrap();
    assert_eq!(rows[0].outcome, ProcessedOutcome::SkippedByOperator);
    assert_eq!(b.a.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(35));
    // A halt for another reason is not in doubt.
    b.b.open_intent(&fence2, &intent(usage, FeedKind::Usage, 36, 40, thief.generation)).await.unwrap();
    b.b.set_halt(&fence2, &halt(FeedKind::Usage, 36, 40, HaltReason::HandlerFailed)).await.unwrap();
    assert!(matches!(
        op.resolve_in_doubt(usage, InDoubtResolution::Skip, "ops", "x").await,
        Err(StoreError::NotInDoubt { .. })
    ));
}

async fn pruning_keeps_the_rows_at_the_cursor_and_newer_entries(b: Backend) {
    let s = &b.a;
    let fence = lead(s, ProcessorKind::Notification, "engine-1").await;
    // Committed at t(1), t(2), t(3), t(10): the cursor ends at 10.
    for id in [1, 2, 3, 10] {
        s.commit(&fence, &commit(FeedKind::Plans, id, id, ProcessedOutcome::Applied)).await.unwrap();
    }
    s.set_halt(&fence, &halt(FeedKind::Plans, 11, 11, HaltReason::HandlerFailed)).await.unwrap();
    let audit_before = s.audit_log(100).await.unwrap().len();
    assert!(audit_before >= 1);

    // Nothing to do without a cutoff.
    assert_eq!(s.prune(None, None).await.unwrap(), (0, 0));
    // Cut at t(5): rows 1..=3 go; 10 (newer, and the cursor's own row) stays.
    let (processed, _) = s.prune(Some(t(5)), None).await.unwrap();
    assert_eq!(processed, 3);
    let left: Vec<i64> = s.processed(FeedKind::Plans, 0, 100).await.unwrap().iter().map(|p| p.event_id).collect();
    assert_eq!(left, vec![10]);
    // Even a cutoff after everything keeps the row at the cursor.
    s.prune(Some(t(1_000_000)), None).await.unwrap();
    assert_eq!(s.processed(FeedKind::Plans, 10, 10).await.unwrap().len(), 1);
    assert_eq!(s.audit_log(100).await.unwrap().len(), audit_before, "audit kept without its cutoff");
    let far_future = Utc::now() + chrono::Duration::days(1);
    let (_, audit) = s.prune(None, Some(far_future)).await.unwrap();
    assert_eq!(audit as usize, audit_before);
    assert!(s.audit_log(100).await.unwrap().is_empty());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = super::sqlite(stringify!($name)).await.unwrap();
                    super::$name(backend).await;
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test]
                #[cfg_attr(not(wap_billing_postgres_tests), ignore = "set WAP_BILLING_TEST_POSTGRES_URL")]
                async fn $name() {
                    super::$name(super::postgres(stringify!($name)).await).await;
                }
            )*
        }
    };
}

conformance!(
    migrations_are_versioned_and_idempotent,
    commits_move_the_cursor_forward_with_a_processed_record,
    a_deposed_leader_cannot_write,
    leases_expire_renew_and_release,
    concurrent_acquisitions_elect_exactly_one,
    halts_resume_and_skip_are_stored_and_audited,
    holds_are_stored_dropped_at_commit_and_by_resume,
    identity_mappings_are_edited_and_audited,
    operator_wrappers_and_cursor_listing,
    intents_are_journaled_fenced_and_resolved,
    pruning_keeps_the_rows_at_the_cursor_and_newer_entries,
);

#[tokio::test]
async fn open_by_url_picks_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?synchronous=normal", dir.path().join("by-url.db").display());
    let store = wap_billing_engine::store::open(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(dir.path().join("by-url.db").exists(), "one file, created on open");
    let memory = wap_billing_engine::store::open("sqlite::memory:").await.unwrap();
    assert_eq!(memory.schema_version().await.unwrap(), LATEST_VERSION);
    let err =
        wap_billing_engine::store::open("postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=1").await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "no password in errors: {err}");
    assert!(err.is_retryable(), "an unreachable server is worth retrying: {err}");
    let bad = wap_billing_engine::store::open("redis://x").await.unwrap_err();
    assert!(matches!(bad, StoreError::InvalidUrl { .. }));
}

#[tokio::test]
#[cfg_attr(not(wap_billing_postgres_tests), ignore = "set WAP_BILLING_TEST_POSTGRES_URL")]
async fn open_by_url_picks_postgres() {
    let store = wap_billing_engine::store::open(&common::postgres_url()).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    assert!(!format!("{store:?}").contains("password="), "Debug redacts");
}
