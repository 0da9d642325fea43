//! Probes of the review that found approvals given to the wrong request, over real HTTP: replayed event ids with
//! another identity, unknown `Method` verbs (and `MethodNumericOrdinals`), blank passwords, and a full answer cache
//! while a decision is in flight.
#![allow(deprecated)] // also exercises ResponderConfig::from_settings, deprecated for ResponderSettings

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use wap_responder::{
    BasicCredentials, Decision, FailureMode, FnApprover, Responder, ResponderConfig, ResponderConfigError,
};

use common::*;

fn event_body(event_id: i64, method: serde_json::Value, entity: serde_json::Value, parent: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "EventId": event_id, "State": 2, "Method": method, "Entity": entity, "EntityParentId": parent,
        "NotificationEventTimeCreated": "2015-06-03T10:31:05.4423178Z"
    }))
    .unwrap()
}

fn subscription(id: &str, plan: &str) -> serde_json::Value {
    serde_json::json!({"SubscriptionID": id, "AccountAdminLiveEmailId": "ana@fabrikam.test", "PlanId": plan})
}

#[tokio::test]
async fn a_replayed_event_id_with_another_identity_is_decided_afresh() {
    let approver = Arc::new(CatalogApprover::new(["gold"], ["backup"], ["sub-a"]));
    let server = start(Responder::new(approver.clone(), basic_config())).await;
    let addr = server.local_addr();
    // Event 42: a subscription create for a sold plan, approved.
    let create = event_body(42, "POST".into(), subscription("sub-a", "gold"), None);
    assert_eq!(approve(addr, "/subscriptions", &create).await.status, 204);
    assert_eq!(approver.calls(), 1);
    // The same request again: the cached answer, no new evaluation.
    assert_eq!(approve(addr, "/subscriptions", &create).await.status, 204);
    assert_eq!(approver.calls(), 1);
    // An add-on create for another (unknown) subscription, sent as event 42: the approver decides (deny).
    let add_on = event_body(42, "POST".into(), serde_json::json!({"AddOnId": "backup"}), Some("sub-other"));
    assert_eq!(approve(addr, "/subscriptionAddons", &add_on).await.status, 403);
    assert_eq!(approver.calls(), 2);
    // A create for a plan that is not sold, as event 42: denied by the approver.
    let unsold = event_body(42, "POST".into(), subscription("sub-a", "not-sold"), None);
    assert_eq!(approve(addr, "/subscriptions", &unsold).await.status, 403);
    assert_eq!(approver.calls(), 3);
    // The same subscription create on the other route, as event 42: decided afresh.
    assert_eq!(approve(addr, "/subscriptionAddons", &create).await.status, 204);
    assert_eq!(approver.calls(), 4);
    // A subscription delete as event 42: the approver is asked (approves deletes), not the cache.
    let delete = event_body(42, "DELETE".into(), subscription("sub-a", "gold"), None);
    assert_eq!(approve(addr, "/subscriptions", &delete).await.status, 204);
    assert_eq!(approver.calls(), 5);
    // Each identity keeps its own answer.
    assert_eq!(approve(addr, "/subscriptions", &unsold).await.status, 403);
    assert_eq!(approve(addr, "/subscriptions", &create).await.status, 204);
    assert_eq!(approver.calls(), 5);
    assert_eq!(*approver.asked.lock().unwrap(), vec![42; 5]);
}

#[tokio::test]
async fn unknown_verbs_get_the_failure_decision_never_an_approval() {
    let approver = Arc::new(CatalogApprover::new(["gold"], [], []));
    let server = start(Responder::new(approver.clone(), basic_config())).await;
    let addr = server.local_addr();
    let verbs: [serde_json::Value; 6] = ["Create".into(), "".into(), "1".into(), "3".into(), 3.into(), "Remove".into()];
    for (i, verb) in verbs.iter().enumerate() {
        let body = event_body(100 + i as i64, verb.clone(), subscription("s", "gold"), None);
        let a = approve(addr, "/subscriptions", &body).await;
        assert_eq!(a.status, 403, "Method {verb}: denied by default");
        let add_on = event_body(200 + i as i64, verb.clone(), serde_json::json!({"AddOnId": "x"}), Some("s"));
        assert_eq!(approve(addr, "/subscriptionAddons", &add_on).await.status, 403, "add-on Method {verb}");
    }
    assert_eq!(approver.calls(), 0, "the approver is not asked about a verb nobody knows");
    // Known update verbs stay approved without the approver.
    for (i, verb) in ["PUT", "Put", "Patch", "patch"].into_iter().enumerate() {
        let body = event_body(300 + i as i64, verb.into(), subscription("s", "not-sold"), None);
        assert_eq!(approve(addr, "/subscriptions", &body).await.status, 204, "{verb}");
    }
    assert_eq!(approver.calls(), 0);

    // The failure mode `approve` applies to unknown verbs as to every failed decision.
    let open = Arc::new(CatalogApprover::new([], [], []));
    let server = start(Responder::new(open.clone(), basic_config().failure_mode(FailureMode::Approve))).await;
    let body = event_body(1, "Create".into(), subscription("s", "gold"), None);
    assert_eq!(approve(server.local_addr(), "/subscriptions", &body).await.status, 204);
    assert_eq!(open.calls(), 0);
}

#[tokio::test]
async fn numeric_ordinals_read_3_as_delete_like_the_engine() {
    let approver = Arc::new(CatalogApprover::new(["gold"], [], []));
    let responder = Responder::new(approver.clone(), basic_config().method_numeric_ordinals(true));
    assert!(responder.method_numeric_ordinals());
    let server = start(responder.clone()).await;
    let addr = server.local_addr();
    for (id, verb) in [(1, serde_json::Value::from("3")), (2, 3.into())] {
        let body = event_body(id, verb, subscription("s", "not-sold"), None);
        assert_eq!(approve(addr, "/subscriptions", &body).await.status, 204, "a delete: the approver approves");
    }
    assert_eq!(approver.calls(), 2, "both were asked as deletes");
    // "1" and "2" are updates.
    for (id, verb) in [(3, "1"), (4, "2")] {
        let body = event_body(id, verb.into(), subscription("s", "not-sold"), None);
        assert_eq!(approve(addr, "/subscriptions", &body).await.status, 204);
    }
    assert_eq!(approver.calls(), 2);
    // The adapter switches the setting off at run time (the engine's value): "3" is unknown again.
    responder.set_method_numeric_ordinals(false);
    let body = event_body(5, "3".into(), subscription("s", "gold"), None);
    assert_eq!(approve(addr, "/subscriptions", &body).await.status, 403);
    assert_eq!(approver.calls(), 2);
}

#[tokio::test]
async fn blank_passwords_are_refused_at_configuration_time() {
    let err = ResponderConfig::from_settings([("BillingAdapterUsername", "WAPCALLER"), ("BillingAdapterPassword", "")])
        .unwrap_err();
    assert!(matches!(err, ResponderConfigError::BlankPassword { .. }), "{err}");
    for password in ["", "   "] {
        let config = ResponderConfig::basic(BasicCredentials::new("WAPCALLER", password));
        let approver = Arc::new(CatalogApprover::new(["gold"], [], []));
        let responder = Responder::new(approver.clone(), config);
        assert!(responder.config_error().is_some());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = wap_responder::serve(listener, responder.clone(), Default::default()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        assert!(refused.to_string().contains("BillingAdapterPassword"), "{refused}");
        // A responder served by other means refuses every call, even one that presents the blank password.
        let request = http::Request::post("/subscriptions")
            .header("Authorization", BasicCredentials::new("WAPCALLER", password).header_value())
            .body(http_body_util::Full::new(bytes::Bytes::from(create_subscription_body(1, "s", "gold"))))
            .unwrap();
        assert_eq!(responder.handle(request).await.status(), 401);
        assert_eq!(approver.calls(), 0);
    }
}

#[tokio::test]
async fn a_full_cache_keeps_the_decision_in_flight_for_its_duplicate() {
    let release = Arc::new(Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (gate, counter) = (release.clone(), calls.clone());
    let approver = FnApprover::<String>::new(
        move |a| {
            let (gate, counter) = (gate.clone(), counter.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                if a.event_id() == 1 {
                    gate.notified().await;
                }
                Ok(Decision::Approve)
            }
        },
        |_| async { Ok(Decision::Approve) },
    );
    let mut config = basic_config();
    config.idempotency_capacity = 4;
    let server = start(Responder::new(approver, config)).await;
    let addr = server.local_addr();
    let first =
        tokio::spawn(async move { approve(addr, "/subscriptions", &create_subscription_body(1, "s", "p")).await });
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // Fill the cache well past its capacity while event 1 is being decided.
    for id in 2..20 {
        assert_eq!(approve(addr, "/subscriptions", &create_subscription_body(id, "s", "p")).await.status, 204);
    }
    let duplicate =
        tokio::spawn(async move { approve(addr, "/subscriptions", &create_subscription_body(1, "s", "p")).await });
    // Let the duplicate reach the cache before the first answer comes.
    // (Not needed for the assertions: either way the duplicate must not run the approver again.)
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    release.notify_one();
    assert_eq!(first.await.unwrap().status, 204);
    assert_eq!(duplicate.await.unwrap().status, 204, "the duplicate waited for the first decision");
    assert_eq!(calls.load(Ordering::SeqCst), 19, "the approver ran once per event");
}
