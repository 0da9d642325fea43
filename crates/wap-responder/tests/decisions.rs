//! Decisions over real HTTP: fail-closed handling of approver errors, panics and budget overruns; idempotency per
//! `EventId` (sequential and concurrent resends); auto-approved updates; 1,000 parallel approvals.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wap_responder::{Decision, FailureMode, FnApprover, Responder};

use common::*;

/// An approver whose create-subscription answer is chosen by the plan id: `approve`, `deny`, `error`, `panic`,
/// `hang` (never answers), `slow` (answers after a short wait).
fn scripted(calls: Arc<AtomicUsize>) -> FnApprover<String> {
    let add_on_calls = calls.clone();
    FnApprover::new(
        move |a| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match a.plan_id().unwrap_or_default() {
                    "approve" => Ok(Decision::Approve),
                    "deny" => Ok(Decision::deny("over credit limit\r\n(second line)")),
                    "error" => Err("billing system unreachable: connection refused".to_owned()),
                    "panic" => panic!("bug in the billing connector"),
                    "hang" => std::future::pending().await,
                    "slow" => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok(Decision::Approve)
                    }
                    other => Ok(Decision::deny(format!("unknown plan {other}"))),
                }
            }
        },
        move |_| {
            add_on_calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(Decision::deny("add-ons are sold by phone")) }
        },
    )
}

#[tokio::test]
async fn errors_panics_and_overruns_fail_closed_by_default() {
    let calls = Arc::new(AtomicUsize::new(0));
    let config = basic_config().decision_budget(Duration::from_millis(300));
    let server = start(Responder::new(scripted(calls.clone()), config)).await;
    let addr = server.local_addr();
    let a = approve(addr, "/subscriptions", &create_subscription_body(1, "s1", "approve")).await;
    assert_eq!(a.status, 204);
    assert!(a.body.is_empty());
    let a = approve(addr, "/subscriptions", &create_subscription_body(2, "s2", "deny")).await;
    assert_eq!((a.status, a.text().as_str()), (403, "over credit limit(second line)"), "reason as one line of text");
    for (id, plan) in [(3, "error"), (4, "panic"), (5, "hang")] {
        let a = approve(addr, "/subscriptions", &create_subscription_body(id, "s", plan)).await;
        assert_eq!(a.status, 403, "{plan}: fail closed");
        assert!(!a.text().contains("connection refused"), "{plan}: internal errors stay in the log");
    }
    // The server is still healthy after the panic.
    assert_eq!(approve(addr, "/subscriptions", &create_subscription_body(6, "s", "approve")).await.status, 204);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    server.shutdown().await;
}

#[tokio::test]
async fn failure_mode_approve_lets_sales_through_but_not_real_denials() {
    let calls = Arc::new(AtomicUsize::new(0));
    let config = basic_config().decision_budget(Duration::from_millis(300)).failure_mode(FailureMode::Approve);
    let server = start(Responder::new(scripted(calls.clone()), config)).await;
    let addr = server.local_addr();
    for (id, plan) in [(3, "error"), (4, "panic"), (5, "hang")] {
        let a = approve(addr, "/subscriptions", &create_subscription_body(id, "s", plan)).await;
        assert_eq!(a.status, 204, "{plan}: failure mode approve");
    }
    let a = approve(addr, "/subscriptions", &create_subscription_body(7, "s", "deny")).await;
    assert_eq!(a.status, 403, "a rule-based denial stays a denial");
    server.shutdown().await;
}

#[tokio::test]
async fn a_resent_event_gets_the_same_answer_without_a_second_evaluation() {
    let calls = Arc::new(AtomicUsize::new(0));
    let config = basic_config().decision_budget(Duration::from_millis(300));
    let server = start(Responder::new(scripted(calls.clone()), config)).await;
    let addr = server.local_addr();
    let deny = create_subscription_body(40, "s", "deny");
    let fail = create_subscription_body(41, "s", "error");
    for round in 0..3 {
        assert_eq!(approve(addr, "/wap/subscriptions", &deny).await.status, 403, "round {round}");
        assert_eq!(approve(addr, "/subscriptions", &fail).await.status, 403, "round {round}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "each event was evaluated once, failures included");

    // The cache is keyed by the request identity: the same id for another plan is another request, decided
    // afresh (a conflict), and never gets the first answer.
    let same_id_other_plan = create_subscription_body(40, "s", "approve");
    assert_eq!(approve(addr, "/subscriptions", &same_id_other_plan).await.status, 204);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(approve(addr, "/subscriptions", &deny).await.status, 403, "the first request keeps its answer");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_duplicates_wait_for_the_first_decision() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = start(Responder::new(scripted(calls.clone()), basic_config())).await;
    let addr = server.local_addr();
    let body = Arc::new(create_subscription_body(77, "s", "slow"));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let body = body.clone();
        tasks.push(tokio::spawn(async move { approve(addr, "/subscriptions", &body).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "twenty copies, one evaluation");
    server.shutdown().await;
}

#[tokio::test]
async fn a_decision_finishes_and_is_cached_even_if_the_caller_hangs_up() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = start(Responder::new(scripted(calls.clone()), basic_config())).await;
    let addr = server.local_addr();
    let body = create_subscription_body(90, "s", "slow");
    // The first caller sends its request, and hangs up once the decision has started (like WAP after its own
    // timeout).
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /subscriptions HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        auth_header(),
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &body).await.unwrap();
    tokio::time::timeout(STEP, async {
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first request reached the approver");
    drop(stream);
    // The resend gets the decision made for the first call.
    assert_eq!(approve(addr, "/subscriptions", &body).await.status, 204);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn updates_are_approved_without_asking_and_unknown_verbs_are_denied() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = start(Responder::new(scripted(calls.clone()), basic_config())).await;
    let addr = server.local_addr();
    assert_eq!(approve(addr, "/subscriptions", &fixture("update-subscription.json")).await.status, 204);
    for method in ["Rename", "2"] {
        let body = serde_json::json!({"EventId": 9, "State": 2, "Method": method,
            "Entity": {"SubscriptionID": "s", "PlanId": "approve"}});
        let a = approve(addr, "/subscriptions", &serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(a.status, 403, "unknown verb {method}: the failure decision (deny)");
    }
    for method in ["Patch", "PUT", "put"] {
        let body = serde_json::json!({"EventId": 5, "State": 2, "Method": method,
            "Entity": {"SubscriptionID": "s", "PlanId": "deny"}});
        let a = approve(addr, "/subscriptions", &serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(a.status, 204, "{method}");
        let body = serde_json::json!({"EventId": 6, "State": 2, "Method": method,
            "Entity": {"AddOnId": "a"}, "EntityParentId": "s"});
        let a = approve(addr, "/subscriptionAddons", &serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(a.status, 204, "add-on {method}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "updates never reach the approver");
    // "0" is a Post: a create, decided by the approver.
    let body = serde_json::json!({"EventId": 8, "State": 2, "Method": "0",
        "Entity": {"SubscriptionID": "s", "PlanId": "deny"}});
    assert_eq!(approve(addr, "/subscriptions", &serde_json::to_vec(&body).unwrap()).await.status, 403);
    // Add-on events are classified by entity shape, at either path.
    let body = serde_json::json!({"EventId": 9, "State": 2, "Method": "Post",
        "Entity": {"AddOnId": "a", "AddOnInstanceId": null}, "EntityParentId": "s"});
    let a = approve(addr, "/subscriptions", &serde_json::to_vec(&body).unwrap()).await;
    assert_eq!((a.status, a.text().as_str()), (403, "add-ons are sold by phone"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_parallel_approvals_are_all_answered_correctly() {
    let approver = Arc::new(CatalogApprover::new(["Gold"], [], []));
    let server = start(Responder::new(approver.clone(), basic_config())).await;
    let addr = server.local_addr();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..1000i64 {
        tasks.spawn(async move {
            // Even ids ask for a mapped plan, odd ones for an unknown plan.
            let plan = if id % 2 == 0 { "Gold" } else { "Tin" };
            let a = approve(addr, "/wap/subscriptions", &create_subscription_body(10_000 + id, "s", plan)).await;
            (id, a.status)
        });
    }
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        let (id, status) = result.unwrap();
        assert_eq!(status, if id % 2 == 0 { 204 } else { 403 }, "event {id}");
        answered += 1;
    }
    assert_eq!(answered, 1000);
    assert_eq!(approver.calls(), 1000);
    let mut asked = approver.asked.lock().unwrap().clone();
    asked.sort_unstable();
    assert_eq!(asked, (10_000..11_000).collect::<Vec<_>>(), "each event evaluated exactly once");
    server.shutdown().await;
}
