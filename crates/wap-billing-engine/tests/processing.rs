//! Processor behaviour under Tokio's paused clock: retry / halt / resume / skip, DependencyNotReady, WAP-side
//! back-off, PendingApproval, Rejected, feed order, cursor rules, identity mapping and usage batches. Every test
//! uses a real SQLite state file.

mod common;

use std::time::Duration;

use common::*;
use wap_billing_engine::{
    AuditAction, EngineConfig, HaltReason, MemorySource, Phase, ProcessedOutcome, ProcessorKind, SourceError,
    SourceErrorKind, StateStore, StoreError,
};
use wap_types::{EventMethod, FeedKind, NotificationState, StartIdMode};

const LONG: Duration = Duration::from_secs(30 * 86_400);

fn cfg() -> EngineConfig {
    config().build().unwrap()
}

async fn cursor(store: &std::sync::Arc<dyn StateStore>, feed: FeedKind) -> Option<i64> {
    store.cursor(feed).await.unwrap().last_event_id
}

#[tokio::test(start_paused = true)]
async fn billing_errors_halt_after_five_attempts_and_resume_gives_a_fresh_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2), ack_plan(3)]);
    source.push(subscription(4, NotificationState::Acknowledged, EventMethod::Post, "sub-a"));
    let handler = Recorder::new();
    handler.fail_always(FeedKind::Plans, 2);
    let config = cfg();

    let running = spawn_events(&config, &source, &store, handler.clone());
    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;

    let calls = handler.calls_for(FeedKind::Plans, 2);
    assert_eq!(calls.len(), 5, "RetryMaxAttempts = 5 calls: {calls:?}");
    assert_eq!(calls.iter().map(|c| c.attempt).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    for pair in calls.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_secs(30), "RetrySleepMilliseconds between attempts");
    }
    assert_eq!(handler.applied(), vec![(FeedKind::Plans, 1)], "nothing after the failing event, no other feed");
    let halt = status.halt.clone().expect("status carries the halt");
    assert_eq!((halt.feed, halt.event_id, halt.attempts), (FeedKind::Plans, 2, 5));
    assert_eq!(halt.reason, HaltReason::HandlerFailed);
    assert!(halt.error.contains("refused"), "{}", halt.error);
    assert_eq!(store.halt(ProcessorKind::Notification).await.unwrap(), Some(halt.clone()), "halt is stored");
    assert_eq!(cursor(&store, FeedKind::Plans).await, Some(1));

    // The halt survives a restart: a new processor on the same file stays halted and calls nothing.
    running.stop().await;
    let running = spawn_events(&config, &source, &store, handler.clone());
    let status = wait_status(&running.handle, LONG, "halt after restart", |s| s.phase == Phase::Halted).await;
    assert_eq!(status.halt.as_ref().map(|h| h.event_id), Some(2));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(handler.calls_for(FeedKind::Plans, 2).len(), 5, "a halted processor does not retry");

    // resume: a fresh budget of five attempts, then halted again.
    running.handle.resume("ops-alice").await.unwrap();
    eventually("second halt", LONG, || handler.calls_for(FeedKind::Plans, 2).len() == 10).await;
    let status = wait_status(&running.handle, LONG, "halt again", |s| s.phase == Phase::Halted).await;
    assert_eq!(status.halt.as_ref().map(|h| h.attempts), Some(5));
    assert_eq!(handler.calls_for(FeedKind::Plans, 2)[5].attempt, 1, "budget restarts at attempt 1");

    // The billing system recovers; resume applies the event and the rest, in order.
    handler.stop_failing();
    running.handle.resume("ops-alice").await.unwrap();
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert_eq!(
        handler.applied(),
        vec![(FeedKind::Plans, 1), (FeedKind::Plans, 2), (FeedKind::Plans, 3), (FeedKind::Subscriptions, 4)]
    );
    assert_eq!(store.halt(ProcessorKind::Notification).await.unwrap(), None);
    let audit: Vec<_> = store.audit_log(50).await.unwrap().into_iter().map(|e| (e.action, e.actor)).collect();
    let holder = config.instance_id.clone();
    assert_eq!(
        audit,
        vec![
            (AuditAction::Halt, holder.clone()),
            (AuditAction::Resume, "ops-alice".to_owned()),
            (AuditAction::Halt, holder),
            (AuditAction::Resume, "ops-alice".to_owned()),
        ]
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn skip_is_audited_and_the_skipped_event_is_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2), ack_plan(3)]);
    let handler = Recorder::new();
    handler.fail_always(FeedKind::Plans, 2);
    let running = spawn_events(&cfg(), &source, &store, handler.clone());

    assert!(matches!(running.handle.skip("ops", "too early").await, Err(StoreError::NotHalted { .. })));
    wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let skipped = running.handle.skip("ops-bob", "plan 2 was created by mistake").await.unwrap();
    assert_eq!(skipped.event_id, 2);
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;

    assert_eq!(handler.applied(), vec![(FeedKind::Plans, 1), (FeedKind::Plans, 3)]);
    assert!(handler.calls_for(FeedKind::Plans, 2).iter().all(|c| !c.ok), "never applied");
    let rows = store.processed(FeedKind::Plans, 1, 3).await.unwrap();
    let outcomes: Vec<_> = rows.iter().map(|r| (r.event_id, r.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![(1, ProcessedOutcome::Applied), (2, ProcessedOutcome::SkippedByOperator), (3, ProcessedOutcome::Applied)]
    );
    let last = store.audit_log(1).await.unwrap().pop().unwrap();
    assert_eq!((last.action, last.actor.as_str(), last.event_id), (AuditAction::Skip, "ops-bob", Some(2)));
    assert!(last.detail.contains("plan 2 was created by mistake"), "{}", last.detail);
    assert_eq!(last.feed, Some(FeedKind::Plans));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn dependency_not_ready_spends_no_attempts_until_the_maximum_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(subscription(10, NotificationState::Acknowledged, EventMethod::Post, "sub-a"));
    source.push(subscription(11, NotificationState::Acknowledged, EventMethod::Post, "sub-b"));
    source.push(subscription_addon(20, "sub-x", "inst-1"));
    let handler = Recorder::new();
    // 15 "not ready" answers (7.5 min at 30 s) stay inside the 10 min wait: no attempt spent, no halt.
    handler.script(FeedKind::Subscriptions, 10, std::iter::repeat_n(Answer::NotReady("plan gold not synced"), 15));
    // Event 11 stays not ready for good: after 10 min each answer spends an attempt; five of them halt.
    handler.script(FeedKind::Subscriptions, 11, std::iter::repeat_n(Answer::NotReady("user missing"), 1000));
    let config = config().dependency_wait_max(Duration::from_secs(600)).build().unwrap();
    let running = spawn_events(&config, &source, &store, handler.clone());

    let waiting = wait_status(&running.handle, LONG, "waiting", |s| {
        s.feed(FeedKind::Subscriptions).is_some_and(|f| f.waiting.is_some())
    })
    .await;
    assert_eq!(waiting.feed(FeedKind::Subscriptions).unwrap().waiting.as_ref().unwrap().event_id, 10);
    let status = wait_status(&running.handle, LONG, "halt on 11", |s| s.phase == Phase::Halted).await;

    let calls10 = handler.calls_for(FeedKind::Subscriptions, 10);
    assert_eq!(calls10.len(), 16, "15 not-ready answers, then applied");
    assert!(calls10.last().unwrap().ok);
    let applied = handler.applied();
    let pos = |k| applied.iter().position(|x| *x == k).unwrap();
    assert!(
        pos((FeedKind::SubscriptionAddons, 20)) < pos((FeedKind::Subscriptions, 10)),
        "later feeds run while an event waits: {applied:?}"
    );

    let halt = status.halt.unwrap();
    assert_eq!((halt.event_id, halt.attempts), (11, 5));
    assert!(halt.error.contains("dependency not ready"), "{}", halt.error);
    let calls11 = handler.calls_for(FeedKind::Subscriptions, 11);
    let waited = calls11.last().unwrap().at - calls11.first().unwrap().at;
    assert!(waited >= Duration::from_secs(600), "attempts spent only after DependencyWaitMaxSeconds: {waited:?}");
    assert!(calls11.len() > 5 + 10, "free retries before the budget was used: {}", calls11.len());
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn wap_side_errors_are_retried_forever_with_growing_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    source.fail_next(Some(FeedKind::Plans), 1, SourceError::new(SourceErrorKind::Status(401), "bad credentials"));
    source.fail_next(Some(FeedKind::Plans), 11, SourceError::new(SourceErrorKind::Status(503), "busy"));
    let handler = Recorder::new();
    let running = spawn_events(&cfg(), &source, &store, handler.clone());

    let failing = wait_status(&running.handle, LONG, "failures reported", |s| {
        s.feed(FeedKind::Plans).is_some_and(|f| f.wap_failures >= 3)
    })
    .await;
    assert!(failing.feed(FeedKind::Plans).unwrap().last_wap_error.is_some());
    eventually("plan 1 applied", LONG, || handler.applied() == vec![(FeedKind::Plans, 1)]).await;

    let requests = source.requests_for(FeedKind::Plans);
    assert!(requests[..12].iter().all(|r| r.returned.is_none()) && requests[12].returned == Some(1));
    let mut base = Duration::from_secs(1);
    for pair in requests[..13].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= base / 2 && gap <= base, "wait {gap:?} outside [{:?}, {base:?}]", base / 2);
        base = (base * 2).min(Duration::from_secs(300));
    }
    assert_eq!(base, Duration::from_secs(300), "the base reached WapRetryMaxMilliseconds");
    let recovered = running.handle.status();
    assert_eq!(recovered.feed(FeedKind::Plans).unwrap().wap_failures, 0);

    // After a success the back-off starts again at 1 s.
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    let before = source.requests_for(FeedKind::Plans).len();
    source.fail_next(Some(FeedKind::Plans), 2, SourceError::new(SourceErrorKind::Transport, "reset"));
    source.push(ack_plan(2));
    running.handle.wake();
    eventually("plan 2 applied", LONG, || handler.applied().len() == 2).await;
    let again = &source.requests_for(FeedKind::Plans)[before..];
    assert!(again[0].returned.is_none() && again[1].returned.is_none());
    assert!(again[1].at - again[0].at <= Duration::from_secs(1), "reset to the initial base");
    assert!(again[2].at - again[1].at <= Duration::from_secs(2));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pending_approval_holds_its_feed_warns_and_later_feeds_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([
        ack_plan(1),
        plan(2, NotificationState::PendingApproval, EventMethod::Post, "pending"),
        ack_plan(3),
        subscription(10, NotificationState::Acknowledged, EventMethod::Post, "sub-a"),
    ]);
    let handler = Recorder::new();
    let running = spawn_events(&cfg(), &source, &store, handler.clone());

    let held = wait_status(&running.handle, LONG, "held", |s| {
        s.cycles >= 1 && s.feed(FeedKind::Plans).is_some_and(|f| f.held.is_some())
    })
    .await;
    let plans = held.feed(FeedKind::Plans).unwrap();
    assert_eq!(plans.held.map(|h| (h.event_id, h.overdue)), Some((2, false)));
    assert_eq!(handler.applied(), vec![(FeedKind::Plans, 1), (FeedKind::Subscriptions, 10)]);
    assert_eq!(store.cursor(FeedKind::Plans).await.unwrap().hold.map(|h| h.event_id), Some(2), "hold is stored");
    assert_eq!(held.phase, Phase::CaughtUp, "a held feed counts as caught up");

    let overdue = wait_status(&running.handle, LONG, "overdue", |s| {
        s.feed(FeedKind::Plans).and_then(|f| f.held).is_some_and(|h| h.overdue)
    })
    .await;
    assert!(overdue.halt.is_none());
    assert_eq!(handler.applied().len(), 2, "still held after the warning");

    // The approval goes through: the next cycle applies the held event and the rest of the feed.
    assert!(source.set_state(FeedKind::Plans, 2, NotificationState::Acknowledged));
    running.handle.wake();
    eventually("plans applied", LONG, || handler.applied().len() == 4).await;
    assert_eq!(&handler.applied()[2..], &[(FeedKind::Plans, 2), (FeedKind::Plans, 3)]);
    assert_eq!(store.cursor(FeedKind::Plans).await.unwrap().hold, None, "hold dropped at commit");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pending_approval_past_the_maximum_wait_halts_resume_waits_again_and_skip_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([plan(2, NotificationState::PendingApproval, EventMethod::Post, "pending"), ack_plan(3)]);
    let handler = Recorder::new();
    let config = config().pending_approval_max_wait(Duration::from_secs(3 * 3600)).build().unwrap();
    let running = spawn_events(&config, &source, &store, handler.clone());

    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.unwrap();
    assert_eq!((halt.event_id, halt.reason.clone()), (2, HaltReason::PendingApprovalTimeout));
    let first_since = store.cursor(FeedKind::Plans).await.unwrap().hold.unwrap().since;

    // resume: the wait starts again (a new hold), no skip happens by itself.
    running.handle.resume("ops").await.unwrap();
    let held = wait_status(&running.handle, LONG, "held again", |s| {
        s.phase != Phase::Halted && s.feed(FeedKind::Plans).and_then(|f| f.held).is_some()
    })
    .await;
    assert!(held.feed(FeedKind::Plans).unwrap().held.unwrap().since > first_since, "the wait restarted");
    wait_status(&running.handle, LONG, "halt again", |s| s.phase == Phase::Halted).await;
    assert!(handler.applied().is_empty(), "nothing applied past a held event");

    running.handle.skip("ops", "approval abandoned").await.unwrap();
    eventually("plan 3 applied", LONG, || handler.applied() == vec![(FeedKind::Plans, 3)]).await;
    let rows = store.processed(FeedKind::Plans, 2, 2).await.unwrap();
    assert_eq!(rows[0].outcome, ProcessedOutcome::SkippedByOperator);
    assert!(handler.calls_for(FeedKind::Plans, 2).is_empty(), "a pending event never reaches the handler");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rejected_events_are_skipped_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([
        ack_plan(1),
        plan(2, NotificationState::Rejected, EventMethod::Post, "nope"),
        plan(3, NotificationState::Approved, EventMethod::Put, "plan-3"),
    ]);
    let handler = Recorder::new();
    let running = spawn_events(&cfg(), &source, &store, handler.clone());
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;

    assert_eq!(handler.applied(), vec![(FeedKind::Plans, 1), (FeedKind::Plans, 3)], "state 3 is applied too");
    assert!(handler.calls_for(FeedKind::Plans, 2).is_empty(), "rejected events never reach the handler");
    let plans = status.feed(FeedKind::Plans).unwrap();
    assert_eq!((plans.applied, plans.skipped_rejected, plans.last_committed), (2, 1, Some(3)));
    let rows = store.processed(FeedKind::Plans, 2, 2).await.unwrap();
    assert_eq!(rows[0].outcome, ProcessedOutcome::SkippedRejected);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn feeds_drain_in_dependency_order_with_sorted_pages_until_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    // One id sequence shared by all feeds, in reverse dependency order, served in descending pages of at most 2.
    source.extend([
        subscription_addon(1, "sub-a", "inst-1"),
        subscription(2, NotificationState::Acknowledged, EventMethod::Post, "sub-a"),
        plan_service(3, "gold", "mysqlservers"),
        plan_addon(4, "gold", "backup"),
        addon(5, "backup"),
        ack_plan(6),
        ack_plan(7),
        ack_plan(8),
        subscription(9, NotificationState::Acknowledged, EventMethod::Put, "sub-a"),
    ]);
    source.set_descending_pages(true);
    source.set_max_page(Some(2));
    let handler = Recorder::new();
    let running = spawn_events(&cfg(), &source, &store, handler.clone());
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;

    let order: Vec<i64> = handler.applied().into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        order,
        vec![6, 7, 8, 5, 4, 3, 2, 9, 1],
        "plans → addons → planAddons → planServices → subscriptions → subscriptionAddons"
    );
    let plans = source.requests_for(FeedKind::Plans);
    let starts: Vec<i64> = plans.iter().take(3).map(|r| r.start.get()).collect();
    assert_eq!(starts, vec![0, 8, 9], "startId 0 first, then highest processed + 1");
    assert_eq!(plans[2].returned, Some(0), "a short page is followed by another fetch; [] ends the feed");
    assert!(plans.iter().all(|r| r.batch_size == 100), "UsageServiceBatchSize");
    assert_eq!(status.feeds.iter().map(|f| f.feed).collect::<Vec<_>>(), FeedKind::EVENT_FEEDS.to_vec());
    assert_eq!(status.last_committed(), Some(9));
    assert_eq!(status.applied(), 9);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cursor_rules_initial_start_id_and_exclusive_start_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend((1..=6).map(ack_plan));
    let handler = Recorder::new();
    let config = config().initial_start_id(FeedKind::Plans, 4).start_id_mode(StartIdMode::Exclusive).build().unwrap();
    let running = spawn_events(&config, &source, &store, handler.clone());
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert_eq!(handler.applied(), vec![(FeedKind::Plans, 4), (FeedKind::Plans, 5), (FeedKind::Plans, 6)]);
    // Exclusive mode sends the committed id itself; the (inclusive) server returns it again and it is dropped.
    let second = &source.requests_for(FeedKind::Plans)[1];
    assert_eq!((second.start.get(), second.returned), (6, Some(1)));

    // A restart continues from the stored cursor, never from InitialStartId again.
    running.stop().await;
    source.push(ack_plan(7));
    let running = spawn_events(&config, &source, &store, handler.clone());
    eventually("plan 7", LONG, || handler.applied().len() == 4).await;
    assert_eq!(handler.applied()[3], (FeedKind::Plans, 7));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unknown_states_and_unparseable_events_halt_as_adapter_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([ack_plan(1), plan(2, NotificationState::Unknown(7), EventMethod::Post, "odd")]);
    let handler = Recorder::new();
    let running = spawn_events(&cfg(), &source, &store, handler.clone());
    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.unwrap();
    assert_eq!((halt.event_id, halt.reason.clone(), halt.attempts), (2, HaltReason::InvalidItem, 5));
    assert!(halt.error.contains("NotificationState"), "{}", halt.error);
    assert!(handler.calls_for(FeedKind::Plans, 2).is_empty());
    running.handle.skip("ops", "unknown state").await.unwrap();

    source.push(wap_billing_engine::FeedItem::Malformed(wap_billing_engine::MalformedItem {
        feed: FeedKind::Plans,
        event_id: 3,
        error: "Entity.State: invalid type: string \"x\"".into(),
        raw: "{}".into(),
    }));
    let status =
        wait_status(&running.handle, LONG, "halt on 3", |s| s.halt.as_ref().is_some_and(|h| h.event_id == 3)).await;
    assert!(status.halt.unwrap().error.contains("Entity.State"));
    assert_eq!(handler.applied(), vec![(FeedKind::Plans, 1)]);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn identity_map_routes_a_post_for_a_mapped_id_as_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let operator = wap_billing_engine::Operator::new(store.clone());
    use wap_billing_engine::IdentityMap;
    let map = std::sync::Arc::new(operator.identity_map());
    map.set(wap_billing_engine::IdentityKind::Plan, "GOLD", "prod-42", "ops").await.unwrap();
    let source = MemorySource::new();
    source.extend([
        plan(1, NotificationState::Acknowledged, EventMethod::Post, "gold"),
        plan(2, NotificationState::Acknowledged, EventMethod::Post, "silver"),
        plan(3, NotificationState::Acknowledged, EventMethod::Patch, "gold"),
        plan(4, NotificationState::Acknowledged, EventMethod::Delete, "silver"),
        plan(5, NotificationState::Acknowledged, EventMethod::Other("Merge".into()), "gold"),
    ]);
    let handler = Recorder::new();
    let processor = wap_billing_engine::EventProcessor::new(
        &cfg(),
        std::sync::Arc::new(source.clone()),
        store.clone(),
        handler.clone(),
    )
    .with_identity_map(map);
    let handle = processor.handle();
    let task = tokio::spawn(processor.run());
    wait_status(&handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    task.abort();

    let seen: Vec<_> = handler.calls().into_iter().map(|c| (c.event_id, c.verb, c.billing_id)).collect();
    let prod = Some("prod-42".to_owned());
    assert_eq!(
        seen,
        vec![
            (1, "updated", prod.clone()),
            (2, "created", None),
            (3, "patched", prod.clone()),
            (4, "deleted", None),
            (5, "updated", prod),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn usage_batches_commit_id_ranges_and_isolate_a_named_failing_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend((1..=10).map(|id| usage(id, "sub-a")));
    let handler = UsageRecorder::new();
    handler.inner.script(FeedKind::Usage, 6, std::iter::repeat_n(Answer::FailRecord(6), 7));
    let running = spawn_usage(&cfg(), &source, &store, handler.clone());

    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.unwrap();
    assert_eq!((halt.feed, halt.event_id, halt.last_event_id, halt.attempts), (FeedKind::Usage, 6, 6, 5));
    let batches = handler.batches();
    assert_eq!(batches[0], ((1..=10).collect(), false), "the whole page first");
    assert_eq!(batches[1], ((1..=5).collect(), true), "records before the failing one as their own batch");
    assert_eq!(batches[2], ((6..=10).collect(), false));
    assert!(batches[3..].iter().all(|(ids, ok)| ids == &vec![6] && !ok), "then record 6 alone: {batches:?}");
    let rows = store.processed(FeedKind::Usage, 1, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| (r.event_id, r.last_event_id)).collect::<Vec<_>>(), vec![(1, 5)], "one range row");
    assert_eq!(store.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(5));

    running.handle.skip("ops", "record for a deleted subscription").await.unwrap();
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    let applied = handler.applied_records();
    assert_eq!(applied, vec![1, 2, 3, 4, 5, 7, 8, 9, 10], "6 skipped, nothing twice");
    assert_eq!(status.feed(FeedKind::Usage).unwrap().applied, 9);
    let rows = store.processed(FeedKind::Usage, 1, 10).await.unwrap();
    let ranges: Vec<_> = rows.iter().map(|r| (r.event_id, r.last_event_id, r.outcome)).collect();
    assert_eq!(
        ranges,
        vec![
            (1, 5, ProcessedOutcome::Applied),
            (6, 6, ProcessedOutcome::SkippedByOperator),
            (7, 10, ProcessedOutcome::Applied)
        ]
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_halted_event_processor_stops_every_event_feed_while_usage_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([
        ack_plan(1),
        addon(2, "backup"),
        subscription(3, NotificationState::Acknowledged, EventMethod::Post, "s"),
    ]);
    source.extend((100..110).map(|id| usage(id, "s")));
    let events = Recorder::new();
    events.fail_always(FeedKind::Plans, 1);
    let usage_handler = UsageRecorder::new();
    let config = cfg();
    let ev = spawn_events(&config, &source, &store, events.clone());
    let us = spawn_usage(&config, &source, &store, usage_handler.clone());
    wait_status(&ev.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    wait_status(&us.handle, LONG, "usage caught up", |s| s.phase == Phase::CaughtUp).await;
    source.push(usage(110, "s"));
    us.handle.wake();
    eventually("usage continues", LONG, || usage_handler.applied_records().len() == 11).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(events.applied().is_empty(), "no event feed runs while the event processor is halted");
    assert_eq!(us.handle.status().halt, None);
    ev.stop().await;
    us.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_disabled_processor_takes_no_lease_and_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let config = config().notification_processor_enabled(false).build().unwrap();
    let running = spawn_events(&config, &source, &store, Recorder::new());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(source.requests().is_empty());
    assert_eq!(running.handle.status().phase, Phase::Stopped);
    assert_eq!(store.lease(ProcessorKind::Notification).await.unwrap(), None);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_feed_not_polled_within_the_retention_window_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let long_ago = chrono::Utc::now() - chrono::Duration::days(31);
    store.record_poll(FeedKind::Subscriptions, long_ago).await.unwrap();
    store.record_poll(FeedKind::Plans, chrono::Utc::now() - chrono::Duration::days(2)).await.unwrap();
    let running = spawn_events(&cfg(), &MemorySource::new(), &store, Recorder::new());
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert!(status.feed(FeedKind::Subscriptions).unwrap().retention_warning, "31 days > RetentionWarnDays");
    assert!(!status.feed(FeedKind::Plans).unwrap().retention_warning);
    assert!(status.feed(FeedKind::Plans).unwrap().last_poll_at.unwrap() > long_ago, "polled again");
    running.stop().await;
}

/// A usage handler that, while billing each batch, waits (virtual time) for the source to be asked for the page
/// after it, and records whether it was.
struct WatchesThePrefetch {
    source: MemorySource,
    batches: std::sync::Mutex<Vec<(i64, i64, bool)>>,
}

#[async_trait::async_trait]
impl wap_billing_engine::UsageHandler for WatchesThePrefetch {
    async fn apply_usage(
        &self,
        batch: wap_billing_engine::UsageBatch<'_>,
    ) -> Result<(), wap_billing_engine::HandlerError> {
        let (first, last) = (batch.first_event_id(), batch.records.last().map_or(0, |r| r.event_id));
        let asked_for_next =
            |source: &MemorySource| source.requests_for(FeedKind::Usage).iter().any(|r| r.start.get() == last + 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !asked_for_next(&self.source) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.batches.lock().unwrap().push((first, last, asked_for_next(&self.source)));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_next_usage_page_is_fetched_while_the_billing_system_takes_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend((1..=250).map(|id| usage(id, "sub-a")));
    let handler = std::sync::Arc::new(WatchesThePrefetch { source: source.clone(), batches: Default::default() });
    let running = spawn_usage(&config().batch_size(100).build().unwrap(), &source, &store, handler.clone());
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    running.stop().await;

    let batches = handler.batches.lock().unwrap().clone();
    assert_eq!(
        batches,
        vec![(1, 100, true), (101, 200, true), (201, 250, true)],
        "each page's successor was asked for while it was billed"
    );
    // The pages the processor used are exactly the spec's sequence; nothing was asked twice.
    let starts: Vec<i64> = source.requests_for(FeedKind::Usage).iter().map(|r| r.start.get()).collect();
    assert_eq!(starts[..4], [0, 101, 201, 251], "{starts:?}");
    assert_eq!(store.cursor(FeedKind::Usage).await.unwrap().last_event_id, Some(250));
}
