//! `stream_from`, `pages()` and `follow` over real HTTP against a small in-memory feed server, in virtual time.
#![allow(deprecated)] // also exercises UsageClientBuilder::setting, deprecated for UsageServiceSettings

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use support::{response, FeedStore, Reply, TestServer};
use tokio::time::Instant;
use wap_usage_client::{Prefetch, RetryPolicy, StartId, UsageClient};

fn client(url: &str, batch: u32) -> UsageClient {
    UsageClient::builder()
        .base_url(url)
        .credentials("usagereader", "Us4ge-Read")
        .batch_size(batch)
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn stream_from_pages_until_an_empty_page() {
    let store = FeedStore::new(1..=10);
    let server = TestServer::with_handler(store.handler()).await;
    let c = client(&server.url(), 3);
    // one request at a time, so the requests are exactly the protocol's
    let items: Vec<_> =
        c.usage().with_prefetch(Prefetch::Off).stream_from(StartId::BEGINNING).map(Result::unwrap).collect().await;
    let ids: Vec<i64> = items.iter().map(|i| i.event_id()).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    for i in &items {
        assert_eq!(i.next_start, StartId::after(i.event_id()));
        assert!(i.retention_gap.is_none());
    }
    let starts: Vec<String> = server.requests().iter().map(|r| r.query("startId").unwrap()).collect();
    assert_eq!(starts, ["0", "4", "7", "10", "11"], "every non-empty page is followed by a request; [] ends");
    assert!(server.requests().iter().all(|r| r.query("batchSize").as_deref() == Some("3")));
    assert!(server
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some("Basic dXNhZ2VyZWFkZXI6VXM0Z2UtUmVhZA==")));
}

#[tokio::test(start_paused = true)]
async fn pages_view_yields_every_page_including_the_caught_up_one() {
    let store = FeedStore::new(1..=7);
    let server = TestServer::with_handler(store.handler()).await;
    let c = client(&server.url(), 3);
    let pages: Vec<_> = c.usage().stream_from(StartId::new(2)).pages().map(Result::unwrap).collect().await;
    let shape: Vec<(i64, usize, i64, bool)> =
        pages.iter().map(|p| (p.requested_start.get(), p.len(), p.next_start.get(), p.caught_up)).collect();
    assert_eq!(shape, [(2, 3, 5, false), (5, 3, 8, false), (8, 0, 8, true)]);

    // switching to pages after consuming part of a page keeps the rest of that page
    let mut items = c.usage().stream_from(StartId::BEGINNING);
    let first = items.next().await.unwrap().unwrap();
    assert_eq!(first.event_id(), 1);
    assert_eq!(items.cursor(), StartId::new(2));
    let pages: Vec<_> = items.pages().map(Result::unwrap).collect().await;
    let ids: Vec<Vec<i64>> = pages.iter().map(|p| p.items.iter().map(|r| r.event_id).collect()).collect();
    assert_eq!(ids, vec![vec![2, 3], vec![4, 5, 6], vec![7], vec![]]);
    assert_eq!(pages[0].requested_start, StartId::new(2));
    assert_eq!(pages[0].next_start, StartId::new(4));
}

#[tokio::test(start_paused = true)]
async fn resuming_from_a_persisted_cursor_neither_skips_nor_repeats() {
    let store = FeedStore::new((1..=50).filter(|i| i % 7 != 0)); // gaps
    let server = TestServer::with_handler(store.handler()).await;
    let c = client(&server.url(), 4);
    let mut seen = Vec::new();
    let mut persisted = StartId::BEGINNING;
    // drop the stream after every 9 items, mid-page, and resume from the persisted cursor
    loop {
        let mut s = c.usage().stream_from(persisted);
        let mut n = 0;
        let mut ended = true;
        while let Some(item) = s.next().await {
            let item = item.unwrap();
            seen.push(item.event_id());
            persisted = item.next_start;
            n += 1;
            if n == 9 {
                ended = false;
                break;
            }
        }
        drop(s);
        if ended {
            break;
        }
    }
    assert_eq!(seen, (1..=50).filter(|i| i % 7 != 0).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn follow_waits_the_interval_then_picks_up_new_records() {
    let store = FeedStore::new(1..=3);
    let server = TestServer::with_handler(store.handler()).await;
    let c = client(&server.url(), 100);
    let mut follow = c.usage().follow(StartId::BEGINNING, None);
    let t0 = Instant::now();
    for expected in 1..=3 {
        assert_eq!(follow.next().await.unwrap().unwrap().event_id(), expected);
    }
    let waiter = tokio::spawn(async move {
        let fourth = follow.next().await.unwrap().unwrap().event_id();
        let fifth = follow.next().await.unwrap().unwrap().event_id();
        (fourth, fifth, follow.cursor())
    });
    tokio::time::sleep(Duration::from_secs(1)).await; // the caught-up poll has happened
    store.append(4..=5);
    assert_eq!(waiter.await.unwrap(), (4, 5, StartId::new(6)));
    // the caught-up answer came at once, the next poll 60 s (the default interval) later
    assert_eq!(t0.elapsed(), Duration::from_secs(60));
    let starts: Vec<String> = server.requests().iter().map(|r| r.query("startId").unwrap()).collect();
    assert_eq!(starts[..3], ["0", "4", "4"], "page [1,2,3], caught up at 4, 60 s later [4,5]");
    // The page after [4,5] may have been requested ahead (prefetch) before the stream was dropped: at most once.
    assert!(matches!(&starts[3..], [] | [_]) && starts[3..].iter().all(|s| s == "6"), "{starts:?}");

    // an explicit interval
    let mut follow = c.usage().follow(StartId::new(6), Duration::from_secs(5));
    let t1 = Instant::now();
    let waiter = tokio::spawn(async move { follow.next().await.unwrap().unwrap().event_id() });
    tokio::time::sleep(Duration::from_secs(12)).await;
    store.append([9]);
    assert_eq!(waiter.await.unwrap(), 9);
    assert_eq!(t1.elapsed(), Duration::from_secs(15), "polls at 0, 5, 10 s found nothing; 15 s found id 9");
}

#[tokio::test(start_paused = true)]
async fn follow_is_cancel_safe_and_keeps_polling_after_errors() {
    let store = FeedStore::new(1..=2);
    let failing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler = {
        let inner = store.handler();
        let failing = failing.clone();
        Arc::new(move |req: &support::RecordedRequest| {
            if failing.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                failing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                Reply::Raw(response(401, &[], b"bad credentials"))
            } else {
                inner(req)
            }
        })
    };
    let server = TestServer::with_handler(handler).await;
    let c = client(&server.url(), 100);

    // drop a follow while it waits: the cursor persisted from yielded items resumes exactly
    let mut follow = c.usage().follow(StartId::BEGINNING, Duration::from_secs(30));
    let a = follow.next().await.unwrap().unwrap();
    let b = follow.next().await.unwrap().unwrap();
    assert_eq!((a.event_id(), b.event_id()), (1, 2));
    let persisted = b.next_start;
    let pending = tokio::time::timeout(Duration::from_secs(10), follow.next()).await;
    assert!(pending.is_err(), "nothing new: still waiting");
    drop(follow);

    store.append(3..=4);
    failing.store(2, std::sync::atomic::Ordering::SeqCst);
    let mut follow = c.usage().follow(persisted, Duration::from_secs(30));
    let e1 = follow.next().await.unwrap().unwrap_err();
    assert_eq!(e1.status(), Some(401));
    let e2 = follow.next().await.unwrap().unwrap_err();
    assert_eq!(e2.status(), Some(401));
    let t = Instant::now();
    let c3 = follow.next().await.unwrap().unwrap();
    assert_eq!(c3.event_id(), 3, "resumed exactly after the persisted cursor");
    assert_eq!(t.elapsed(), Duration::from_secs(30), "an error waits one interval");
    assert_eq!(follow.next().await.unwrap().unwrap().event_id(), 4);
}

#[tokio::test(start_paused = true)]
async fn stream_from_ends_after_an_error() {
    let server = TestServer::scripted(vec![
        Reply::Raw(support::json_ok(serde_json::to_string(&[support::usage_json(1)]).unwrap().as_bytes())),
        Reply::Raw(response(403, &[], b"forbidden")),
    ])
    .await;
    let c = client(&server.url(), 1);
    let mut stream = c.usage().stream_from(StartId::BEGINNING);
    let mut results = Vec::new();
    while let Some(r) = stream.next().await {
        results.push(r);
    }
    assert!(stream.next().await.is_none(), "polling after the end is harmless");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].as_ref().unwrap().event_id(), 1);
    assert_eq!(results[1].as_ref().unwrap_err().status(), Some(403));
}

#[tokio::test(start_paused = true)]
async fn a_purge_below_the_cursor_is_reported_on_the_first_item() {
    let store = FeedStore::new(1..=20);
    let server = TestServer::with_handler(store.handler()).await;
    let c = client(&server.url(), 5);
    let first: Vec<_> = c.usage().stream_from(StartId::BEGINNING).take(8).map(Result::unwrap).collect().await;
    let cursor = first.last().unwrap().next_start;
    assert_eq!(cursor, StartId::new(9));

    // no purge: resuming reports nothing
    let again: Vec<_> = c.usage().stream_from(cursor).map(Result::unwrap).collect().await;
    assert!(again.iter().all(|i| i.retention_gap.is_none()));
    assert_eq!(again.first().unwrap().event_id(), 9);

    // WAP's retention deletes ids below 15 before the adapter resumes at 9
    store.purge_below(15);
    let resumed: Vec<_> = c.usage().stream_from(cursor).map(Result::unwrap).collect().await;
    let gap = resumed[0].retention_gap.expect("gap reported on the first item");
    assert_eq!((gap.first_expected_id, gap.first_returned_id, gap.missing_ids()), (9, 15, 6));
    assert_eq!(gap.oldest_retained_id, Some(15));
    assert_eq!(resumed.iter().map(|i| i.event_id()).collect::<Vec<_>>(), (15..=20).collect::<Vec<_>>());
    assert!(resumed[1..].iter().all(|i| i.retention_gap.is_none()));

    // the pages view carries it on the first page only
    let pages: Vec<_> = c.usage().with_batch_size(2).stream_from(cursor).pages().map(Result::unwrap).collect().await;
    assert!(pages[0].retention_gap.is_some());
    assert!(pages[1..].iter().all(|p| p.retention_gap.is_none()));
}

#[tokio::test(start_paused = true)]
async fn an_ordinary_id_gap_after_the_cursor_is_not_a_purge() {
    // ids 9..=11 were never assigned; records below the cursor are still retained
    let store = FeedStore::new((1..=20).filter(|i| !(9..=11).contains(i)));
    let server = TestServer::with_handler(store.handler()).await;
    let c = client(&server.url(), 5);
    let resumed: Vec<_> = c.usage().stream_from(StartId::new(9)).map(Result::unwrap).collect().await;
    assert_eq!(resumed[0].event_id(), 12);
    assert!(resumed.iter().all(|i| i.retention_gap.is_none()));
    let probes = server.requests().iter().filter(|r| r.target.ends_with("startId=0&batchSize=1")).count();
    assert_eq!(probes, 1, "one request for the oldest retained record");

    // a hand-written loop over page() asks explicitly
    let page = c.usage().page(StartId::new(9), 5).await.unwrap();
    assert_eq!(page.retention_gap, None);
    assert_eq!(c.usage().check_retention_gap(&page).await.unwrap(), None);
    store.purge_below(12);
    let page = c.usage().page(StartId::new(9), 5).await.unwrap();
    let gap = c.usage().check_retention_gap(&page).await.unwrap().unwrap();
    assert_eq!((gap.first_returned_id, gap.oldest_retained_id), (12, Some(12)));
}

#[tokio::test(start_paused = true)]
async fn pages_are_prefetched_as_configured() {
    let store = FeedStore::new(1..=10);
    let server = TestServer::with_handler(store.handler()).await;
    let c = client(&server.url(), 4);
    for (prefetch, requests_after_first_item) in
        [(Prefetch::Off, 1), (Prefetch::NextPage, 2), (Prefetch::Speculative, 3)]
    {
        let before = server.requests().len();
        let mut stream = c.usage().with_prefetch(prefetch).stream_from(StartId::BEGINNING);
        assert_eq!(stream.next().await.unwrap().unwrap().event_id(), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(server.requests().len() - before, requests_after_first_item, "{prefetch:?}");
        let rest: Vec<i64> = stream.map(|r| r.unwrap().event_id()).collect().await;
        assert_eq!(rest, (2..=10).collect::<Vec<_>>(), "{prefetch:?}");
    }
    // page 1 (startId 0) covered ids up to 4, i.e. 5 ids; the speculative request predicts the page after page 2 at
    // 5 + (5 - 0 - isqrt(5)) = 8, a start the protocol itself never sends (it sends 0, 5, 9, 11)
    let targets: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    assert!(targets.contains(&"/usage?startId=8&batchSize=4".to_owned()), "{targets:?}");
}

/// Irregular ids (dense, sparse, dense again) make speculative predictions land below and above the cursor; every
/// pull must still deliver each id exactly once, in order.
#[tokio::test(start_paused = true)]
async fn speculative_prefetch_never_skips_or_repeats() {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut ids = Vec::new();
    let mut id = 0i64;
    for i in 0..600 {
        let step = match i / 100 {
            0 | 3 => 1 + i64::from(rng.u8(0..100) < 3),
            1 | 4 => 1 + rng.i64(0..40),
            _ => 1 + rng.i64(0..3),
        };
        id += step;
        ids.push(id);
    }
    for inclusive in [true, false] {
        let store = FeedStore::new(ids.clone());
        let handler = if inclusive { store.handler() } else { store.exclusive_handler() };
        let server = TestServer::with_handler(handler).await;
        for batch in [1u32, 2, 5, 17, 64, 1000] {
            let c = UsageClient::builder()
                .base_url(server.url())
                .credentials("u", "p")
                .batch_size(batch)
                .start_id_inclusive(inclusive)
                .build()
                .unwrap();
            let mut cursor = StartId::BEGINNING;
            let mut got = Vec::new();
            let mut s = c.usage().with_prefetch(Prefetch::Speculative).stream_from(StartId::BEGINNING);
            while let Some(item) = s.next().await {
                let item = item.unwrap();
                assert!(item.next_start > cursor, "the cursor only moves forward");
                cursor = item.next_start;
                got.push(item.event_id());
            }
            assert_eq!(got, ids, "batch {batch}, inclusive {inclusive}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn keep_alive_reuses_one_connection() {
    let store = FeedStore::new(1..=30);
    let server = TestServer::with_handler(store.handler()).await;
    let c = client(&server.url(), 3).usage().with_prefetch(Prefetch::Off);
    let n = c.stream_from(StartId::BEGINNING).count().await;
    assert_eq!(n, 30);
    assert_eq!(server.requests().len(), 11);
    assert_eq!(server.connections(), 1, "11 requests over one keep-alive connection");
}

#[tokio::test(start_paused = true)]
async fn an_exclusive_server_is_followed_with_start_id_inclusive_false() {
    let store = FeedStore::new(1..=10);
    let server = TestServer::with_handler(store.exclusive_handler()).await;
    let c = UsageClient::builder()
        .base_url(server.url())
        .credentials("u", "p")
        .batch_size(4)
        .setting("StartIdInclusive", "false")
        .build()
        .unwrap();
    let items: Vec<_> =
        c.usage().with_prefetch(Prefetch::Off).stream_from(StartId::BEGINNING).map(Result::unwrap).collect().await;
    assert_eq!(items.iter().map(|i| i.event_id()).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(items[3].next_start, StartId::new(4), "the cursor is the highest id itself");
    let starts: Vec<String> = server.requests().iter().map(|r| r.query("startId").unwrap()).collect();
    assert_eq!(starts, ["0", "4", "8", "10"]);
    assert_eq!(c.resume_start(Some(10)), StartId::new(10));
}
