//! Behaviour against `wap-sim` over real HTTP on loopback (issue item 5): full pulls equal the generated set, pulls
//! under injected faults, resume after a dropped stream, `follow` of live data, retention purges, TLS.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use wap_sim::{DatasetSpec, FaultKind, FaultPlan, LiveConfig, WapSim};
use wap_types::{Feed, FeedKind, HasEventId, UsageRecord};
use wap_usage_client::{PageItem, Prefetch, RetryPolicy, StartId, UsageClient};

/// Every test is bounded.
const LIMIT: Duration = Duration::from_secs(120);

async fn sim(records: u64) -> WapSim {
    WapSim::builder().seed(11).dataset(DatasetSpec::with_usage_records(records)).start().await.unwrap()
}

fn client(sim: &WapSim, batch: u32) -> UsageClient {
    UsageClient::builder()
        .base_url(sim.usage_service_url())
        .basic_credentials(sim.credentials())
        .batch_size(batch)
        .retry_policy(RetryPolicy::exponential(Duration::from_millis(1), Duration::from_millis(20)).max_attempts(100))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn pull_all(client: &UsageClient, start: StartId) -> Vec<UsageRecord> {
    pull_all_with(client, start, Prefetch::default()).await
}

async fn pull_all_with(client: &UsageClient, start: StartId, prefetch: Prefetch) -> Vec<UsageRecord> {
    let stream = client.usage().with_prefetch(prefetch).stream_from(start);
    tokio::time::timeout(LIMIT, stream.map(|r| r.unwrap().item).collect::<Vec<_>>())
        .await
        .expect("pull finished in time")
}

fn ids<T: HasEventId>(items: &[T]) -> Vec<i64> {
    items.iter().map(HasEventId::event_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pull_is_exactly_the_generated_set_in_order() {
    let sim = sim(100_000).await;
    let expected = sim.usage_records();
    assert!(expected.len() > 90_000, "the generator leaves ~2% id gaps");
    // speculative prefetching over the simulator's ~2% id gaps, and the default
    for (batch, prefetch) in [(100, Prefetch::Speculative), (10_000, Prefetch::NextPage)] {
        let pulled = pull_all_with(&client(&sim, batch), StartId::BEGINNING, prefetch).await;
        assert_eq!(pulled.len(), expected.len(), "batch {batch}");
        assert!(pulled == expected, "batch {batch}: pulled records differ from the generated set");
    }
    // batch 1 is one request per record: 100,000 requests take too long in a debug build, so it pulls the last
    // 2,000 records (from a cursor inside the set) and checks the final empty page.
    let tail_start = expected[expected.len() - 2_000].event_id;
    sim.clear_request_log();
    // (one request at a time, so the request log is exactly the protocol's)
    let pulled = pull_all_with(&client(&sim, 1), StartId::new(tail_start), Prefetch::Off).await;
    assert!(pulled[..] == expected[expected.len() - 2_000..], "batch 1");
    let log = sim.request_log();
    assert_eq!(log.len(), 2_001, "2,000 pages of one record, then the caught-up []");
    assert!(log.iter().all(|e| e.status == 200 && e.items <= 1));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_under_injected_faults_ends_with_the_identical_set() {
    let sim = sim(100_000).await;
    let expected = sim.usage_records();
    sim.set_faults(FaultPlan::seeded(5).rate(0.2).kinds(&[
        FaultKind::Status500Html,
        FaultKind::Status503Empty,
        FaultKind::ResetMidBody,
        FaultKind::TruncatedJson,
    ]));
    let pulled = pull_all(&client(&sim, 1_000), StartId::BEGINNING).await;
    let stats = sim.fault_stats();
    assert!(pulled == expected, "the faulted pull differs from the generated set");
    for kind in [FaultKind::Status500Html, FaultKind::Status503Empty, FaultKind::ResetMidBody, FaultKind::TruncatedJson]
    {
        assert!(stats.count(kind) > 0, "{kind:?} was never injected: {stats:?}");
    }
    let log = sim.request_log();
    let faulted = log.iter().filter(|e| e.fault.is_some()).count();
    assert!(faulted * 100 / log.len() >= 10, "about 20% of requests faulted: {faulted} of {}", log.len());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_a_persisted_cursor_after_dropping_the_stream_neither_skips_nor_repeats() {
    let sim = sim(30_000).await;
    let expected = ids(&sim.usage_records());
    let mut seen: Vec<i64> = Vec::new();
    let mut persisted = StartId::BEGINNING;
    // stop after an odd number of items (mid-page), drop the stream and the client (a restart), resume
    for chunk in [1_234usize, 777, 5_001, 3, 9_999] {
        let client = client(&sim, 1_000);
        let mut stream = client.usage().stream_from(persisted);
        for _ in 0..chunk {
            let item = tokio::time::timeout(LIMIT, stream.next()).await.unwrap().unwrap().unwrap();
            assert!(item.retention_gap.is_none(), "an id gap after the cursor is not a purge");
            seen.push(item.event_id());
            persisted = item.next_start;
        }
        drop(stream);
    }
    let rest = pull_all(&client(&sim, 1_000), persisted).await;
    seen.extend(ids(&rest));
    assert_eq!(seen.len(), expected.len());
    assert!(seen == expected, "skipped or repeated ids");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_picks_up_records_added_live() {
    let sim = sim(2_000).await;
    let client = client(&sim, 500);
    let mut follow = client.usage().follow(StartId::BEGINNING, Duration::from_millis(20));
    let initial = sim.usage_ids();
    let mut seen = Vec::new();
    while seen.len() < initial.len() {
        seen.push(tokio::time::timeout(LIMIT, follow.next()).await.unwrap().unwrap().unwrap().event_id());
    }
    assert_eq!(seen, initial);

    // records generated in one go, then records arriving in live mode
    let added = sim.generate_usage(700);
    sim.start_live(LiveConfig::new(Duration::from_millis(10), 25, 0));
    let deadline = tokio::time::Instant::now() + LIMIT;
    while seen.len() < initial.len() + 1_500 {
        let next = tokio::time::timeout_at(deadline, follow.next()).await.expect("live records arrive");
        seen.push(next.unwrap().unwrap().event_id());
    }
    sim.stop_live();
    assert!(seen.contains(added.end()), "the generated batch was followed");
    // after live mode stopped, everything retained is followed exactly once
    let all = sim.usage_ids();
    while seen.len() < all.len() {
        seen.push(tokio::time::timeout(LIMIT, follow.next()).await.unwrap().unwrap().unwrap().event_id());
    }
    assert_eq!(seen, all);
    assert!(tokio::time::timeout(Duration::from_millis(200), follow.next()).await.is_err(), "nothing more");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_purge_below_the_cursor_is_reported() {
    let sim = sim(10_000).await;
    let client = client(&sim, 1_000);
    let first: Vec<_> = client.usage().stream_from(StartId::BEGINNING).take(4_000).map(|r| r.unwrap()).collect().await;
    let cursor = first.last().unwrap().next_start;

    // WAP's retention job runs while the adapter is stopped and deletes 500 ids beyond its cursor
    let purge_to = cursor.get() + 500;
    assert!(sim.purge_before_id(FeedKind::Usage, purge_to) > 4_000);
    let resumed: Vec<_> = client.usage().stream_from(cursor).map(|r| r.unwrap()).collect().await;
    let gap = resumed[0].retention_gap.expect("purge reported");
    assert_eq!(gap.first_expected_id, cursor.get());
    assert!(gap.first_returned_id >= purge_to);
    assert_eq!(gap.oldest_retained_id, Some(gap.first_returned_id));
    assert!(gap.missing_ids() >= 500);
    assert!(resumed[1..].iter().all(|i| i.retention_gap.is_none()));
    assert_eq!(ids(&resumed.iter().map(|i| i.item.clone()).collect::<Vec<_>>()), sim.usage_ids());

    // a purge that stays below the cursor loses nothing and is not reported
    let last = resumed[resumed.len() / 2].next_start;
    sim.purge_before_id(FeedKind::Usage, last.get() - 10);
    let again: Vec<_> = client.usage().stream_from(last).map(|r| r.unwrap()).collect().await;
    assert!(again.iter().all(|i| i.retention_gap.is_none()));
    sim.shutdown().await;
}

async fn pull_event_feed<F: Feed>(client: &UsageClient) -> Vec<i64>
where
    F::Item: PageItem,
{
    let items: Vec<_> =
        client.feed::<F>().stream_from(StartId::BEGINNING).map(|r| r.unwrap().event_id()).collect().await;
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_feed_is_pulled_completely_despite_its_id_gaps() {
    let sim = sim(0).await;
    let client = client(&sim, 3);
    let pulled = [
        (FeedKind::Plans, pull_event_feed::<wap_types::PlansFeed>(&client).await),
        (FeedKind::Addons, pull_event_feed::<wap_types::AddonsFeed>(&client).await),
        (FeedKind::PlanAddons, pull_event_feed::<wap_types::PlanAddonsFeed>(&client).await),
        (FeedKind::PlanServices, pull_event_feed::<wap_types::PlanServicesFeed>(&client).await),
        (FeedKind::Subscriptions, pull_event_feed::<wap_types::SubscriptionsFeed>(&client).await),
        (FeedKind::SubscriptionAddons, pull_event_feed::<wap_types::SubscriptionAddonsFeed>(&client).await),
    ];
    let mut all = HashSet::new();
    for (feed, got) in &pulled {
        assert!(!got.is_empty(), "{feed}");
        assert_eq!(*got, sim.event_ids(*feed), "{feed}");
        for id in got {
            assert!(all.insert(*id), "ids are shared across feeds, never repeated");
        }
    }
    // typed entities: every subscription event carries its subscription id
    let subs: Vec<_> = client.subscriptions().stream_from(StartId::BEGINNING).map(|r| r.unwrap().item).collect().await;
    assert!(subs.iter().all(|e| !e.entity.subscription_id.is_empty()));
    sim.shutdown().await;
}

#[cfg(feature = "rustls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_simulators_self_signed_certificate() {
    let sim = WapSim::builder().tls(true).dataset(DatasetSpec::with_usage_records(300)).start().await.unwrap();
    assert_eq!(sim.usage_service_url().scheme(), "https");
    let expected = sim.usage_records();
    let base = || {
        UsageClient::builder()
            .base_url(sim.usage_service_url())
            .basic_credentials(sim.credentials())
            .retry_policy(RetryPolicy::disabled())
    };
    let pinned = base().pinned_certificate_sha256(sim.tls_certificate_sha256().unwrap()).build().unwrap();
    assert!(pull_all(&pinned, StartId::BEGINNING).await == expected);
    let ca = base().use_system_roots(false).add_ca_certificate_pem(sim.tls_certificate_pem().unwrap()).build().unwrap();
    assert!(pull_all(&ca, StartId::BEGINNING).await == expected);
    let wrong = base().pinned_certificate_sha256([0; 32]).build().unwrap();
    let err = wrong.usage().page(StartId::BEGINNING, 10).await.unwrap_err();
    assert!(matches!(err, wap_usage_client::Error::Tls { .. }), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_without_retrying() {
    let sim = sim(10).await;
    let client = UsageClient::builder()
        .base_url(sim.usage_service_url())
        .credentials("usagereader", "wrong")
        .retry_policy(RetryPolicy::unlimited())
        .build()
        .unwrap();
    let err = client.usage().page(StartId::BEGINNING, 10).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!format!("{err} {err:?}").contains("wrong"));
    assert_eq!(sim.request_log().len(), 1);
    sim.shutdown().await;
}
