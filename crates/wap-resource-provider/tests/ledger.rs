//! The usage ledger: ids, acknowledgement, compaction and crash safety (real SQLite files, reopened).

use wap_resource_provider::{serve_usage, UsageLedger, UsageQuery, UsageSource};
use wap_types::{LastId, RpUsageRecord, StringMap, WapDateTime};

fn record(subscription: &str, gb: u32) -> RpUsageRecord {
    RpUsageRecord {
        event_id: 999, // ignored: the ledger assigns ids
        subscription_id: subscription.into(),
        start_time: WapDateTime::parse("2015-06-02T08:00:00Z").unwrap(),
        end_time: WapDateTime::parse("2015-06-02T09:00:00.1234567Z").unwrap(),
        service_type: Some("Default".into()),
        resource_id: Some(format!("share-{gb}")),
        resources: [("StorageGB".to_owned(), gb.to_string())].into_iter().collect::<StringMap>(),
        ..Default::default()
    }
}

async fn poll(ledger: &UsageLedger, query: &str) -> Vec<RpUsageRecord> {
    let p = serve_usage(ledger, UsageQuery::parse(Some(query)).unwrap(), 10_000).await.unwrap();
    p.page.entries().iter().map(|e| e.record().unwrap()).collect()
}

#[tokio::test]
async fn unacknowledged_records_survive_a_restart_and_ids_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    {
        let ledger = UsageLedger::open(&path).await.unwrap();
        assert_eq!(ledger.append(record("s1", 1)).await.unwrap(), 1);
        assert_eq!(ledger.append_all(vec![record("s1", 2), record("s2", 3)]).await.unwrap(), 2..=3);
        // The collector got 1..=2 but has not acknowledged them yet.
        let first = poll(&ledger, "lastID=&batchSize=2").await;
        assert_eq!(first.iter().map(|r| r.event_id).collect::<Vec<_>>(), [1, 2]);
    } // the "process" ends without any shutdown step
    {
        let ledger = UsageLedger::open(&path).await.unwrap();
        let stats = ledger.stats().await.unwrap();
        assert_eq!((stats.highest_issued, stats.pending), (3, 3));
        // Same lastID as before: the same records again (at-least-once), exactly as appended.
        let again = poll(&ledger, "lastID=&batchSize=2").await;
        assert_eq!(again.iter().map(|r| r.event_id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(again[1], RpUsageRecord { event_id: 2, ..record("s1", 2) });
        // lastID=3 acknowledges only what was served (1..=2): 3 was never served, so it comes now, as 4.
        let rest = poll(&ledger, "lastID=3").await;
        assert_eq!(rest, [RpUsageRecord { event_id: 4, ..record("s2", 3) }]);
        assert_eq!(ledger.stats().await.unwrap().acknowledgements_above_served, 1);
        // Acknowledge everything: the file keeps nothing, but the next id continues.
        assert!(poll(&ledger, "lastID=4").await.is_empty());
        assert_eq!(ledger.stats().await.unwrap().pending, 0);
    }
    {
        let ledger = UsageLedger::open(&path).await.unwrap();
        assert_eq!(ledger.stats().await.unwrap().acknowledged_through, 4);
        assert_eq!(ledger.append(record("s3", 4)).await.unwrap(), 5, "ids are never reused");
        // A collector re-sending an old lastID gets nothing it already acknowledged.
        let page = poll(&ledger, "lastID=1").await;
        assert_eq!(page.iter().map(|r| r.event_id).collect::<Vec<_>>(), [5]);
        // A lastID beyond the highest issued acknowledges nothing.
        assert!(poll(&ledger, "lastID=6").await.is_empty());
        assert_eq!(ledger.stats().await.unwrap().pending, 1);
        ledger.compact().await.unwrap();
        assert_eq!(ledger.stats().await.unwrap().pending, 1);
    }
}

#[tokio::test]
async fn both_backends_agree_on_a_long_random_session() {
    let dir = tempfile::tempdir().unwrap();
    let mem = UsageLedger::in_memory();
    let sql = UsageLedger::open(dir.path().join("agree.db")).await.unwrap();
    let mut rng = fastrand_like(7);
    let mut last = LastId::NONE;
    let mut received = Vec::new();
    for step in 0..200 {
        let n = (rng() % 5) as u32;
        let records: Vec<RpUsageRecord> = (0..n).map(|i| record("s", step * 10 + i)).collect();
        let a = mem.append_all(records.clone()).await.unwrap();
        let b = sql.append_all(records).await.unwrap();
        assert_eq!(a, b);
        let batch = rng() % 4;
        let q = format!("lastID={}&batchSize={batch}", last.to_query_value());
        let pm = poll(&mem, &q).await;
        let ps = poll(&sql, &q).await;
        assert_eq!(pm, ps, "step {step}");
        assert!(pm.len() <= batch as usize);
        received.extend(pm.iter().map(|r| r.event_id));
        // Sometimes the collector "loses" a page and repeats the same lastID.
        if rng() % 5 != 0 {
            last = last.after_page(pm.iter().map(|r| r.event_id));
        } else {
            received.truncate(received.len() - pm.len());
        }
    }
    // Drain.
    loop {
        let q = format!("lastID={}&batchSize=7", last.to_query_value());
        let page = poll(&sql, &q).await;
        assert_eq!(page, poll(&mem, &q).await);
        if page.is_empty() {
            break;
        }
        received.extend(page.iter().map(|r| r.event_id));
        last = last.after_page(page.iter().map(|r| r.event_id));
    }
    let highest = sql.stats().await.unwrap().highest_issued;
    assert_eq!(received, (1..=highest).collect::<Vec<_>>(), "every id exactly once, in order");
    let mut sql_stats = sql.stats().await.unwrap();
    assert!(sql_stats.append_commits >= 1);
    sql_stats.append_commits = 0; // a metric of the SQLite backend only
    assert_eq!(mem.stats().await.unwrap(), sql_stats);
}

#[tokio::test]
async fn invalid_records_are_refused_and_leave_nothing_behind() {
    let ledger = UsageLedger::in_memory();
    let err = ledger.append_all(vec![record("s", 1), record(" ", 2)]).await.unwrap_err();
    assert!(err.to_string().contains("SubscriptionId"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(ledger.stats().await.unwrap().highest_issued, 0);
    assert_eq!(ledger.append_all(Vec::new()).await.unwrap().count(), 0);
    assert_eq!(ledger.append(record("s", 1)).await.unwrap(), 1);
    // Record 1 was never served: it moves above 100 with the counter.
    assert_eq!(ledger.advance_ids_past(100).await.unwrap(), 1);
    assert_eq!(ledger.advance_ids_past(50).await.unwrap(), 0);
    assert_eq!(ledger.append(record("s", 1)).await.unwrap(), 102);
    assert_eq!(ledger.highest_issued_id().await.unwrap(), 102);
    assert_eq!(ledger.records_after(LastId::NONE, 10).await.unwrap().event_ids(), [101, 102]);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, b"this is not sqlite, it is a text file that is long enough to have a header....").unwrap();
    let err = UsageLedger::open(&path).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not-a-db"), "{text}");
}

/// A tiny deterministic generator (xorshift), so the session is the same on every run.
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.max(1);
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed_without_losing_or_sharing_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group.db");
    let ledger = UsageLedger::open(&path).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..40u32 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25u32 {
                if i % 5 == 0 {
                    let r = ledger.append_all(vec![record("s", t * 100 + i), record("s", t * 100 + i)]).await.unwrap();
                    assert_eq!(r.end() - r.start(), 1, "a batch gets consecutive ids");
                    ids.extend(r);
                } else {
                    ids.push(ledger.append(record("s", t * 100 + i)).await.unwrap());
                }
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let ids = t.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "each caller sees its ids increase");
        all.extend(ids);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1200).collect::<Vec<i64>>(), "every id once");
    drop(ledger);
    let reopened = UsageLedger::open(&path).await.unwrap();
    assert_eq!(reopened.stats().await.unwrap().pending, 1200, "all durable");
    let page = reopened.records_after(LastId::new(1199), 10).await.unwrap();
    assert_eq!(page.event_ids(), [1200]);
}

/// The child of [`appends_returned_before_a_kill_are_in_the_file`]: 32 tasks append one record per call to the
/// ledger at `RP_KILL_TEST_DB` and print each id once its append returned, until killed. Does nothing otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of appends_returned_before_a_kill_are_in_the_file"]
async fn kill_test_child_appends_until_killed() {
    let Some(path) = std::env::var_os("RP_KILL_TEST_DB") else { return };
    let ledger = UsageLedger::open(&path).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    for t in 0..32u32 {
        let (ledger, tx) = (ledger.clone(), tx.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let id = ledger.append_with_key(record("s", i), format!("task-{t}-record-{i}")).await.unwrap();
                if tx.send(id).is_err() {
                    return;
                }
            }
        });
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some(id) = rx.recv().await {
        writeln!(out, "appended {id}").unwrap();
        out.flush().unwrap();
    }
}

/// Group commit answers an append only after its commit: a process killed (SIGKILL) while 32 tasks append keeps
/// every record whose append had returned. (A kill does not drop the page cache: this shows the ordering; the
/// sync itself is SQLite's `synchronous=FULL`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_returned_before_a_kill_are_in_the_file() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.db");
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["kill_test_child_appends_until_killed", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("RP_KILL_TEST_DB", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut returned = Vec::new();
        while returned.len() < 300 {
            let line = lines.next().expect("the child stopped before it was killed").unwrap();
            if let Some(id) = line.strip_prefix("appended ") {
                returned.push(id.parse::<i64>().unwrap());
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the kill lands while the child is appending");
        child.kill().unwrap();
        child.wait().unwrap();
        // Ids printed between the last read and the kill were also returned: take them too.
        returned.extend(lines.map_while(Result::ok).filter_map(|l| l.strip_prefix("appended ")?.parse::<i64>().ok()));

        let ledger = UsageLedger::open(&path).await.unwrap();
        let stats = ledger.stats().await.unwrap();
        let stored: std::collections::HashSet<i64> =
            ledger.records_after(LastId::NONE, 1_000_000).await.unwrap().event_ids().into_iter().collect();
        assert_eq!(stored.len() as u64, stats.pending);
        let lost: Vec<i64> = returned.iter().copied().filter(|id| !stored.contains(id)).collect();
        assert!(lost.is_empty(), "round {round}: appends returned but missing after the kill: {lost:?}");
        drop(ledger);
    }
}
