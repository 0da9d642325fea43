//! Probes of the review that found usage deleted unserved, on both ledgers (real SQLite files): a `lastID` above
//! what was served, a lost / recreated / restored ledger, a second collector, compaction that returns space,
//! retried appends, out-of-order visibility in a custom source, and blank credentials.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use wap_resource_provider::{
    async_trait, serve_usage, serve_usage_with, EndpointAuth, GapHoldBack, LastIdBeyondIssued, RpServer, ServerError,
    UsageLedger, UsageLedgerError, UsagePage, UsageQuery, UsageSource, UsageSourceError,
};
use wap_types::{BasicCredentials, LastId, RpUsageRecord, StringMap, WapDateTime};

fn record(subscription: &str, n: u32) -> RpUsageRecord {
    RpUsageRecord {
        subscription_id: subscription.into(),
        start_time: WapDateTime::parse("2015-06-02T08:00:00Z").unwrap(),
        end_time: WapDateTime::parse("2015-06-02T09:00:00Z").unwrap(),
        service_type: Some("Default".into()),
        resource_id: Some(format!("share-{n}")),
        resources: [("StorageGB".to_owned(), n.to_string())].into_iter().collect::<StringMap>(),
        ..Default::default()
    }
}

fn records(n: u32) -> Vec<RpUsageRecord> {
    (0..n).map(|i| record("b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796", i)).collect()
}

async fn page(source: &(impl UsageSource + ?Sized), query: &str) -> Vec<i64> {
    serve_usage(source, UsageQuery::parse(Some(query)).unwrap(), 10_000).await.unwrap().page.event_ids()
}

/// Both backends, fresh: (name, ledger, temp dir kept alive).
async fn ledgers() -> Vec<(&'static str, UsageLedger, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = UsageLedger::open(dir.path().join("usage.db")).await.unwrap();
    vec![("memory", UsageLedger::in_memory(), tempfile::tempdir().unwrap()), ("sqlite", sqlite, dir)]
}

async fn pending(ledger: &UsageLedger) -> Vec<i64> {
    ledger.records_after(LastId::NONE, 100_000).await.unwrap().event_ids()
}

#[tokio::test]
async fn a_last_id_above_what_was_served_deletes_nothing_unserved() {
    for (name, ledger, _dir) in ledgers().await {
        assert_eq!(ledger.append_all(records(10)).await.unwrap(), 1..=10);
        assert_eq!(page(&ledger, "lastID=&batchSize=2").await, [1, 2], "{name}");
        // The review's probe: lastID=8 while only 1..=2 were served.
        let answer = page(&ledger, "lastID=8&batchSize=100").await;
        // 3..=8 were never served: nothing deletes them; they get ids above the highest (a collector drops ids at
        // or below its lastID) and come after 9 and 10, content unchanged.
        assert_eq!(answer, [9, 10, 11, 12, 13, 14, 15, 16], "{name}");
        let moved = ledger.records_after(LastId::new(10), 1).await.unwrap().entries()[0].record().unwrap();
        assert_eq!(moved, RpUsageRecord { event_id: 11, ..records(3)[2].clone() }, "{name}");
        let stats = ledger.stats().await.unwrap();
        assert_eq!(stats.acknowledged_through, 2, "{name}");
        assert_eq!(stats.acknowledgements_above_served, 1, "{name}: the metric counts it");
        assert_eq!(stats.served_through, 16, "{name}");
        assert_eq!(pending(&ledger).await, (9..=16).collect::<Vec<_>>(), "{name}");
        // Now that they were served, a lastID acknowledges them.
        assert_eq!(page(&ledger, "lastID=12").await, [13, 14, 15, 16], "{name}");
        assert_eq!(pending(&ledger).await, [13, 14, 15, 16], "{name}");
        // The trait's acknowledge primitive obeys the same mark.
        ledger.append_all(records(2)).await.unwrap();
        assert_eq!(ledger.acknowledge(18).await.unwrap(), 4, "{name}: only 13..=16 were served");
        assert_eq!(pending(&ledger).await, [17, 18], "{name}");
    }
}

#[tokio::test]
async fn the_served_mark_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    {
        let ledger = UsageLedger::open(&path).await.unwrap();
        ledger.append_all(records(6)).await.unwrap();
        assert_eq!(page(&ledger, "lastID=&batchSize=4").await, [1, 2, 3, 4]);
    }
    let ledger = UsageLedger::open(&path).await.unwrap();
    assert_eq!(ledger.stats().await.unwrap().served_through, 4);
    // lastID=6 acknowledges what the earlier process served (1..=4); 5 and 6 never left: they come as 7 and 8.
    assert_eq!(page(&ledger, "lastID=6").await, [7, 8]);
    assert_eq!(pending(&ledger).await, [7, 8]);
}

#[tokio::test]
async fn a_lost_ledger_moves_its_ids_past_the_collectors_last_id() {
    for (name, ledger, _dir) in ledgers().await {
        // The review's probe: the ledger was lost; WAP's collector is at lastID=100; 5 new records, none served.
        ledger.append_all(records(5)).await.unwrap();
        let answer = page(&ledger, "lastID=100&batchSize=100").await;
        assert_eq!(answer, [101, 102, 103, 104, 105], "{name}: served with ids above the collector's lastID");
        let stats = ledger.stats().await.unwrap();
        assert_eq!((stats.pending, stats.acknowledged_through, stats.last_ids_beyond_issued), (5, 0, 1), "{name}");
        // The records kept their content.
        let first = ledger.records_after(LastId::NONE, 1).await.unwrap().entries()[0].record().unwrap();
        assert_eq!(first, RpUsageRecord { event_id: 101, ..records(1)[0].clone() }, "{name}");
        // New appends continue above; the next lastID acknowledges what was served.
        assert_eq!(ledger.append(record("s", 9)).await.unwrap(), 106, "{name}");
        assert_eq!(page(&ledger, "lastID=105").await, [106], "{name}");
        assert_eq!(page(&ledger, "lastID=106").await, Vec::<i64>::new(), "{name}");
        assert_eq!(ledger.stats().await.unwrap().pending, 0, "{name}");
    }
}

#[tokio::test]
async fn a_refusing_ledger_keeps_everything_until_an_operator_acts() {
    for (name, ledger, _dir) in ledgers().await {
        let ledger = ledger.last_id_beyond_issued(LastIdBeyondIssued::Refuse);
        ledger.append_all(records(5)).await.unwrap();
        let err = serve_usage(&ledger, UsageQuery::parse(Some("lastID=100")).unwrap(), 100).await.unwrap_err();
        assert!(err.to_string().contains("lastID 100"), "{name}: {err}");
        assert!(!err.is_retryable());
        assert_eq!(ledger.stats().await.unwrap().pending, 5, "{name}");
        assert_eq!(ledger.stats().await.unwrap().highest_issued, 5, "{name}: refused = nothing changed");
        // The operator advances the ids past the collector's lastID: the records are renumbered and served.
        assert_eq!(ledger.advance_ids_past(100).await.unwrap(), 5, "{name}");
        assert_eq!(page(&ledger, "lastID=100").await, [101, 102, 103, 104, 105], "{name}");
    }
}

#[tokio::test]
async fn a_restored_backup_never_deletes_what_it_did_not_serve() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let backup = dir.path().join("backup.db");
    {
        let ledger = UsageLedger::open(&live).await.unwrap();
        ledger.append_all(records(5)).await.unwrap();
        assert_eq!(page(&ledger, "lastID=&batchSize=3").await, [1, 2, 3]);
        ledger.compact().await.unwrap(); // checkpoint: the main file holds everything
        std::fs::copy(&live, &backup).unwrap();
        // Life goes on after the backup: more records, all collected.
        ledger.append_all(records(5)).await.unwrap();
        assert_eq!(page(&ledger, "lastID=3").await, [4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(page(&ledger, "lastID=10").await, Vec::<i64>::new());
    }
    // The live file is lost; the backup is restored. The collector is at lastID=10.
    let ledger = UsageLedger::open(&backup).await.unwrap();
    let stats = ledger.stats().await.unwrap();
    assert_eq!((stats.highest_issued, stats.served_through, stats.pending), (5, 3, 5));
    let answer = page(&ledger, "lastID=10").await;
    // 4 and 5 were never served by this ledger: they get ids above 10 and are served (at least once). 1..=3 stay
    // until a lastID acknowledges them; nothing was deleted unserved.
    assert_eq!(answer, [11, 12]);
    assert_eq!(pending(&ledger).await, [1, 2, 3, 11, 12]);
    assert_eq!(page(&ledger, "lastID=12").await, Vec::<i64>::new());
    assert_eq!(pending(&ledger).await, Vec::<i64>::new());
}

#[tokio::test]
async fn two_collectors_never_make_the_ledger_delete_a_record_nobody_received() {
    for (name, ledger, _dir) in ledgers().await {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // Each collector keeps its own lastID; one of them sometimes jumps ahead (a stale or foreign cursor). Records
        // are followed by their content (a renumbered record keeps it).
        let mut last = [LastId::NONE, LastId::NONE];
        let mut received = BTreeSet::new();
        let mut appended = 0;
        for step in 0..300 {
            let n = (next() % 4) as u32;
            ledger.append_all((appended..appended + n).map(|i| record("s", i)).collect()).await.unwrap();
            appended += n;
            let who = (next() % 2) as usize;
            let highest = ledger.stats().await.unwrap().highest_issued;
            let jump = next() % 7 == 0;
            let sent = if jump { LastId::new(highest) } else { last[who] };
            let before = contents(&ledger).await;
            let q = format!("lastID={}&batchSize={}", sent.to_query_value(), 1 + next() % 5);
            let answer = serve_usage(&ledger, UsageQuery::parse(Some(&q)).unwrap(), 10_000).await.unwrap().page;
            let after = contents(&ledger).await;
            for deleted in before.difference(&after) {
                assert!(received.contains(deleted), "{name} step {step}: {deleted} deleted before anyone got it");
            }
            received.extend(answer.entries().iter().map(|e| e.record().unwrap().resource_id.unwrap()));
            last[who] = sent.after_page(answer.event_ids());
        }
        assert!(ledger.stats().await.unwrap().acknowledgements_above_served > 0, "{name}: the probe did jump");
    }
}

/// The contents (resource ids) of the pending records.
async fn contents(ledger: &UsageLedger) -> BTreeSet<String> {
    let page = ledger.records_after(LastId::NONE, 100_000).await.unwrap();
    page.entries().iter().map(|e| e.record().unwrap().resource_id.unwrap()).collect()
}

#[tokio::test]
async fn compaction_returns_the_space_of_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let ledger = UsageLedger::open(&path).await.unwrap();
    let mut big = record("b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796", 0);
    big.properties = Some([("Note".to_owned(), "x".repeat(1500))].into_iter().collect());
    for _ in 0..10 {
        ledger.append_all(vec![big.clone(); 1000]).await.unwrap();
    }
    ledger.compact().await.unwrap();
    let full = std::fs::metadata(&path).unwrap().len();
    assert!(full > 15_000_000, "{full} bytes");
    // Serve everything, then acknowledge it all.
    let mut last = LastId::NONE;
    loop {
        let got = page(&ledger, &format!("lastID={}&batchSize=5000", last.to_query_value())).await;
        if got.is_empty() {
            break;
        }
        last = last.after_page(got);
    }
    assert_eq!(ledger.stats().await.unwrap().pending, 0);
    ledger.compact().await.unwrap();
    let compacted = std::fs::metadata(&path).unwrap().len();
    assert!(compacted * 20 < full, "the file shrank from {full} to {compacted} bytes");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
    assert_eq!(free, 0, "no free page left behind");
}

#[tokio::test]
async fn an_older_file_without_incremental_auto_vacuum_is_converted_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // A file as an older release could have left it: no auto_vacuum, the tables of that time.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE wap_usage_record (event_id INTEGER PRIMARY KEY, record TEXT NOT NULL);
             CREATE TABLE wap_usage_ledger (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO wap_usage_ledger VALUES ('highest_issued', 0), ('acknowledged_through', 0);",
        )
        .unwrap();
        let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, 0);
    }
    let ledger = UsageLedger::open(&path).await.unwrap();
    assert_eq!(ledger.append(record("s", 1)).await.unwrap(), 1);
    drop(ledger);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, 2, "incremental from now on");
}

#[tokio::test]
async fn a_retried_append_with_its_client_key_stores_once() {
    for (name, ledger, _dir) in ledgers().await {
        let id = ledger.append_with_key(record("s", 1), "rp-record-0001").await.unwrap();
        // The caller's timeout fired after the commit; it retries with the same key.
        assert_eq!(ledger.append_with_key(record("s", 1), "rp-record-0001").await.unwrap(), id, "{name}");
        assert_eq!(ledger.append_with_key(record("s", 2), "rp-record-0002").await.unwrap(), id + 1, "{name}");
        assert_eq!(ledger.stats().await.unwrap().pending, 2, "{name}");
        let batch = ledger.append_all_keyed(records(3), Some("batch-7".into())).await.unwrap();
        assert_eq!(ledger.append_all_keyed(records(3), Some("batch-7".into())).await.unwrap(), batch, "{name}");
        let err = ledger.append_all_keyed(records(2), Some("batch-7".into())).await.unwrap_err();
        assert!(matches!(err, UsageLedgerError::ClientKeyReused { stored: 3, given: 2, .. }), "{name}: {err}");
        assert_eq!(ledger.stats().await.unwrap().pending, 5, "{name}");
        // Unkeyed appends are never deduplicated.
        ledger.append(record("s", 1)).await.unwrap();
        ledger.append(record("s", 1)).await.unwrap();
        assert_eq!(ledger.stats().await.unwrap().pending, 7, "{name}");
    }
}

#[tokio::test]
async fn client_keys_survive_a_restart_and_their_retention_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    {
        let ledger = UsageLedger::open(&path).await.unwrap();
        assert_eq!(ledger.append_with_key(record("s", 1), "k1").await.unwrap(), 1);
    }
    let ledger = UsageLedger::open(&path).await.unwrap().client_key_retention(2);
    assert_eq!(ledger.append_with_key(record("s", 1), "k1").await.unwrap(), 1, "remembered across the restart");
    assert_eq!(ledger.append_with_key(record("s", 2), "k2").await.unwrap(), 2);
    assert_eq!(ledger.append_with_key(record("s", 3), "k3").await.unwrap(), 3);
    // Only the two most recent keys are kept: k1 is forgotten (a retry that late stores again).
    assert_eq!(ledger.append_with_key(record("s", 3), "k3").await.unwrap(), 3);
    assert_eq!(ledger.append_with_key(record("s", 1), "k1").await.unwrap(), 4);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let keys: i64 = conn.query_row("SELECT count(*) FROM wap_usage_append_key", [], |r| r.get(0)).unwrap();
    assert_eq!(keys, 2);
}

/// A provider's own store whose ids come from a sequence: a record may become visible after a higher one.
#[derive(Debug, Default)]
struct SequenceStore {
    rows: Mutex<(i64, BTreeMap<i64, RpUsageRecord>, i64)>,
}

impl SequenceStore {
    /// Takes the next id without making the record visible yet (a transaction in flight).
    fn take_id(&self) -> i64 {
        let mut rows = self.rows.lock().unwrap();
        rows.0 += 1;
        rows.0
    }

    fn commit(&self, id: i64) {
        self.rows.lock().unwrap().1.insert(id, RpUsageRecord { event_id: id, ..record("s", id as u32) });
    }
}

#[async_trait]
impl UsageSource for SequenceStore {
    async fn highest_issued_id(&self) -> Result<i64, UsageSourceError> {
        Ok(self.rows.lock().unwrap().0)
    }

    async fn acknowledge(&self, up_to: i64) -> Result<u64, UsageSourceError> {
        let mut rows = self.rows.lock().unwrap();
        let keep = rows.1.split_off(&(up_to + 1));
        let removed = rows.1.len() as u64;
        rows.1 = keep;
        Ok(removed)
    }

    async fn records_after(&self, after: LastId, limit: usize) -> Result<UsagePage, UsageSourceError> {
        let rows = self.rows.lock().unwrap();
        let records: Vec<RpUsageRecord> =
            rows.1.range(after.get().unwrap_or(0) + 1..).take(limit).map(|(_, r)| r.clone()).collect();
        UsagePage::from_records(&records).map_err(|e| UsageSourceError::with_source("serialize", false, e))
    }

    async fn highest_served_id(&self) -> Result<Option<i64>, UsageSourceError> {
        Ok(Some(self.rows.lock().unwrap().2))
    }

    async fn record_served(&self, through: i64) -> Result<(), UsageSourceError> {
        let mut rows = self.rows.lock().unwrap();
        rows.2 = rows.2.max(through);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn records_after_a_young_gap_are_held_back_until_it_fills_or_ages() {
    let store = SequenceStore::default();
    let gaps = GapHoldBack::new(Duration::from_secs(5));
    let serve = |q: &'static str| {
        let (store, gaps) = (&store, &gaps);
        async move {
            serve_usage_with(store, UsageQuery::parse(Some(q)).unwrap(), 100, gaps).await.unwrap().page.event_ids()
        }
    };
    let (a, b, c) = (store.take_id(), store.take_id(), store.take_id());
    store.commit(a);
    store.commit(c); // b is still in flight: c is visible before it
    assert_eq!(serve("lastID=").await, [1], "3 is held back behind the gap at 2");
    // Without the hold-back the collector would get 3, acknowledge it, and 2 would be deleted unserved later.
    store.commit(b);
    assert_eq!(serve("lastID=1").await, [2, 3]);
    // A gap that never fills (a rolled-back transaction) is waited for once, then served past.
    let (d, e) = (store.take_id(), store.take_id());
    let _ = d;
    store.commit(e);
    assert_eq!(serve("lastID=3").await, Vec::<i64>::new());
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(serve("lastID=3").await, [5]);
    // The served mark only counts what was sent.
    assert_eq!(store.highest_served_id().await.unwrap(), Some(5));
}

#[test]
fn blank_credentials_are_refused_on_every_endpoint() {
    let ledger = UsageLedger::in_memory();
    for password in ["", "  "] {
        let blank = EndpointAuth::basic(BasicCredentials::new("rpadmin", password));
        let err = RpServer::builder("backup").usage("/", blank.clone(), ledger.clone()).build().unwrap_err();
        assert!(matches!(&err, ServerError::BlankCredentials { endpoint } if endpoint == "usage"), "{err}");
        assert!(!err.is_retryable());
        let ok = EndpointAuth::basic(BasicCredentials::new("rpadmin", "R3source#Key"));
        let service = tower::service_fn(|_req: wap_resource_provider::MountedRequest| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
        });
        let err = RpServer::builder("backup")
            .usage("/", ok, ledger.clone())
            .mount("/admin/", blank, service)
            .build()
            .unwrap_err();
        assert!(matches!(&err, ServerError::BlankCredentials { endpoint } if endpoint.starts_with("mount")), "{err}");
    }
    let no_user = EndpointAuth::basic(BasicCredentials::new(" ", "R3source#Key"));
    assert!(RpServer::builder("backup").usage("/", no_user, ledger).build().is_err());
    // Nor can they be registered with WAP.
    let blank = EndpointAuth::basic(BasicCredentials::new("rpadmin", ""));
    let err = wap_resource_provider::RegistrationBuilder::new("backup")
        .usage_endpoint("https://rp.contoso.test/", &blank)
        .build()
        .unwrap_err();
    assert_eq!(err, wap_resource_provider::RegistrationError::BlankCredentials { endpoint: "UsageEndpoint" });
}
