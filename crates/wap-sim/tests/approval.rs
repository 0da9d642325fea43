//! Tenant actions through approval against small in-test subscribers, and pricing queries.

mod common;

use std::time::Duration;

use common::{Recorded, Reply, TestServer};
use serde_json::Value;
use url::Url;
use wap_sim::{
    ActionStatus, AddOnApprovalRoute, CallResult, CreateSubscription, DatasetSpec, NotificationSubscriber,
    SubscriberType, SubscriptionUpdate, WapSim,
};
use wap_types::{AddonPriceQuery, BasicCredentials, FeedKind, PlanPriceQuery};

async fn sim() -> WapSim {
    WapSim::builder()
        .seed(3)
        .dataset(DatasetSpec::with_usage_records(10))
        .approval_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap()
}

fn caller() -> BasicCredentials {
    BasicCredentials::new("wapcaller", "S3cure!pass")
}

fn public_plan(sim: &WapSim) -> String {
    sim.plans().into_iter().find(|p| p.state.map(|s| s.code()) == Some(1)).unwrap().id
}

fn feed_event(sim: &WapSim, feed: FeedKind, id: i64) -> Option<Value> {
    sim.events_json(feed).into_iter().find(|e| e["EventId"] == id)
}

#[tokio::test]
async fn an_approved_create_is_sent_like_wap_and_appears_on_the_feed() {
    let sub = TestServer::start(|_| Reply::status(204)).await;
    let sim = sim().await;
    let endpoint = sub.url.join("wap/").unwrap();
    sim.register_subscriber(NotificationSubscriber::billing("wap-billing", endpoint).with_auth(caller()));
    let plan = public_plan(&sim);
    let out = sim.create_subscription(CreateSubscription::new("lena.vogel@northwind.test", plan.clone())).await;
    assert_eq!(out.status, ActionStatus::Approved, "{out:?}");
    let id = out.event_id.unwrap();
    let sub_id = out.subscription_id.clone().unwrap();

    let got = sub.received();
    assert_eq!(got.len(), 1);
    let r: &Recorded = &got[0];
    assert_eq!((r.method.as_str(), r.path_and_query.as_str()), ("POST", "/wap/subscriptions"));
    assert_eq!(r.header("content-type").unwrap(), "application/json; charset=utf-8");
    assert_eq!(r.header("expect").unwrap(), "100-continue");
    assert_eq!(r.header("authorization").unwrap(), caller().header_value());
    assert_eq!(r.header("content-length").unwrap(), r.body.len().to_string());
    let text = std::str::from_utf8(&r.body).unwrap();
    assert!(!text.contains('\n') && !text.contains("\": "), "compact JSON: {text}");
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["State"], 2);
    assert_eq!(body["Method"], "POST");
    assert_eq!(body["EventId"], id);
    assert_eq!(body["Entity"]["State"], 0);
    assert_eq!(body["Entity"]["Created"], "0001-01-01T00:00:00");
    assert_eq!(body["Entity"]["PlanId"], plan.as_str());
    let t = body["NotificationEventTimeCreated"].as_str().unwrap();
    assert!(t.ends_with('Z') && t.len() == 28, "7 fraction digits + Z: {t}");
    let request: wap_types::ApprovalRequest = wap_types::json::from_slice(&r.body).unwrap();
    assert_eq!(request.operation(), wap_types::ApprovalOperation::CreateSubscription);

    let e = feed_event(&sim, FeedKind::Subscriptions, id).expect("committed under the same id");
    assert_eq!(e["State"], 0);
    assert_eq!(e["Entity"]["State"], 1, "active once committed");
    assert!(sim.subscriptions().iter().any(|s| s.subscription_id == sub_id));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_denial_timeout_or_unreachable_subscriber_commits_nothing() {
    let deny = TestServer::start(|_| Reply::status(403)).await;
    let slow = TestServer::start(|_| Reply::status(204).delayed(Duration::from_secs(5))).await;
    let sim = sim().await;
    let plan = public_plan(&sim);
    let before = sim.event_ids(FeedKind::Subscriptions);

    sim.register_subscriber(NotificationSubscriber::billing("deny", deny.url.clone()));
    let out = sim.create_subscription(CreateSubscription::new("a@b.test", plan.clone())).await;
    assert_eq!(out.status, ActionStatus::Denied);
    assert_eq!(out.calls[0].result, CallResult::Status(403));
    assert!(deny.received()[0].header("authorization").is_none(), "mode None sends no Authorization");
    assert!(!sim.subscriptions().iter().any(|s| Some(&s.subscription_id) == out.subscription_id.as_ref()));

    sim.register_subscriber(NotificationSubscriber::billing("deny", slow.url.clone()));
    let out = sim.create_subscription(CreateSubscription::new("a@b.test", plan.clone())).await;
    assert_eq!(out.status, ActionStatus::Denied);
    assert_eq!(out.calls[0].result, CallResult::Timeout, "the configured 300 ms timeout denies");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    sim.register_subscriber(NotificationSubscriber::billing("deny", dead));
    let out = sim.create_subscription(CreateSubscription::new("a@b.test", plan)).await;
    assert_eq!(out.status, ActionStatus::Denied);
    assert!(matches!(out.calls[0].result, CallResult::ConnectionFailed(_)), "{:?}", out.calls);

    assert_eq!(sim.event_ids(FeedKind::Subscriptions), before, "nothing reached the feed");
    sim.shutdown().await;
}

#[tokio::test]
async fn every_blocking_subscriber_is_asked_and_optional_ones_are_not() {
    let billing = TestServer::start(|_| Reply::status(204)).await;
    let mandatory = TestServer::start(|_| Reply::status(500)).await;
    let optional = TestServer::start(|_| Reply::status(204)).await;
    let disabled = TestServer::start(|_| Reply::status(204)).await;
    let sim = sim().await;
    sim.register_subscriber(NotificationSubscriber::billing("billing", billing.url.clone()));
    sim.register_subscriber(
        NotificationSubscriber::billing("mandatory", mandatory.url.clone()).with_type(SubscriberType::MandatoryService),
    );
    sim.register_subscriber(
        NotificationSubscriber::billing("optional", optional.url.clone()).with_type(SubscriberType::OptionalService),
    );
    sim.register_subscriber(NotificationSubscriber::billing("off", disabled.url.clone()).enabled(false));
    let out = sim.create_subscription(CreateSubscription::new("a@b.test", public_plan(&sim))).await;
    assert_eq!(out.status, ActionStatus::Denied, "a 500 from a mandatory subscriber denies");
    assert_eq!(out.calls.len(), 2);
    assert_eq!(billing.received().len(), 1);
    assert_eq!(mandatory.received().len(), 1);
    assert!(optional.received().is_empty());
    assert!(disabled.received().is_empty());
    assert!(sim.remove_subscriber("mandatory"));
    let out = sim.create_subscription(CreateSubscription::new("a@b.test", public_plan(&sim))).await;
    assert!(out.is_approved());
    sim.shutdown().await;
}

#[tokio::test]
async fn with_no_subscriber_wap_approves_by_itself() {
    let sim = sim().await;
    let out = sim.create_subscription(CreateSubscription::new("new@tenant.test", public_plan(&sim))).await;
    assert!(out.is_approved());
    assert!(out.calls.is_empty());
    assert!(feed_event(&sim, FeedKind::Subscriptions, out.event_id.unwrap()).is_some());
    let refused = sim.create_subscription(CreateSubscription::new("x@y.test", "NoSuchPlan")).await;
    assert!(matches!(refused.status, ActionStatus::Refused(_)));
    assert_eq!(refused.event_id, None);
    sim.shutdown().await;
}

#[tokio::test]
async fn updates_add_ons_and_deletes_go_through_approval() {
    let sub = TestServer::start(|r| {
        // Deny add-on removals, approve everything else.
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if v["Method"] == "DELETE" && v["Entity"].get("AddOnId").is_some() {
            Reply::status(403)
        } else {
            Reply::status(204)
        }
    })
    .await;
    let sim = WapSim::builder()
        .seed(3)
        .dataset(DatasetSpec::with_usage_records(10))
        .add_on_approval_route(AddOnApprovalRoute::PutSubscriptionAddons)
        .start()
        .await
        .unwrap();
    // Registered without a trailing slash: WAP still inserts one.
    sim.register_subscriber(NotificationSubscriber::billing("b", sub.url.join("adapter").unwrap()).with_auth(caller()));
    let created = sim.create_subscription(CreateSubscription::new("t@t.test", public_plan(&sim))).await;
    let sub_id = created.subscription_id.unwrap();

    let out = sim.update_subscription(&sub_id, SubscriptionUpdate::suspend()).await;
    assert!(out.is_approved());
    let e = feed_event(&sim, FeedKind::Subscriptions, out.event_id.unwrap()).unwrap();
    assert_eq!((e["Method"].as_str(), e["Entity"]["State"].as_i64()), (Some("PUT"), Some(2)));
    assert_eq!(sim.subscriptions().iter().find(|s| s.subscription_id == sub_id).unwrap().state.unwrap().code(), 2);

    let add_on = sim.add_ons()[0].id.clone();
    let out = sim.add_subscription_addon(&sub_id, &add_on).await;
    assert!(out.is_approved(), "{out:?}");
    let e = feed_event(&sim, FeedKind::SubscriptionAddons, out.event_id.unwrap()).unwrap();
    assert_eq!(e["EntityParentId"], sub_id.as_str());
    assert_eq!(e["Entity"]["AddOnInstanceId"], out.add_on_instance_id.clone().unwrap().as_str());

    let denied = sim.remove_subscription_addon(&sub_id, &add_on).await;
    assert_eq!(denied.status, ActionStatus::Denied);
    assert!(feed_event(&sim, FeedKind::SubscriptionAddons, denied.event_id.unwrap()).is_none());

    let deleted = sim.delete_subscription(&sub_id).await;
    assert!(deleted.is_approved());
    let e = feed_event(&sim, FeedKind::Subscriptions, deleted.event_id.unwrap()).unwrap();
    assert_eq!(e["Method"], "DELETE");
    assert!(!sim.subscriptions().iter().any(|s| s.subscription_id == sub_id));

    let got = sub.received();
    let routes: Vec<(String, String)> = got.iter().map(|r| (r.method.clone(), r.path_and_query.clone())).collect();
    assert_eq!(
        routes,
        vec![
            ("POST".to_owned(), "/adapter/subscriptions".to_owned()),
            ("POST".to_owned(), "/adapter/subscriptions".to_owned()),
            ("PUT".to_owned(), "/adapter/subscriptionAddons".to_owned()),
            ("POST".to_owned(), "/adapter/subscriptionAddons".to_owned()),
            ("POST".to_owned(), "/adapter/subscriptions".to_owned()),
        ]
    );
    let methods: Vec<String> = got
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["Method"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(methods, ["POST", "PUT", "POST", "DELETE", "DELETE"]);
    for r in &got {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["State"], 2);
        let op = wap_types::json::from_slice::<wap_types::ApprovalRequest>(&r.body).unwrap().operation();
        if v["Entity"].get("AddOnId").is_some() {
            assert_eq!(v["EntityParentId"], sub_id.as_str());
            assert!(matches!(
                op,
                wap_types::ApprovalOperation::CreateSubscriptionAddOn
                    | wap_types::ApprovalOperation::DeleteSubscriptionAddOn
            ));
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn pricing_queries_are_sent_like_wap() {
    let pricer = TestServer::start(|r| {
        if r.path_and_query.contains("planPrice") {
            Reply::json(200, "\"Silver Hosting: $25.00 per month + usage\"")
        } else {
            Reply::json(200, "\"\"")
        }
    })
    .await;
    let sim = sim().await;
    assert!(matches!(
        sim.plan_price(PlanPriceQuery { id: "x".into(), ..Default::default() }).await,
        Err(wap_sim::SimError::NoPricingSubscriber)
    ));
    sim.register_subscriber(NotificationSubscriber::billing("b", pricer.url.join("wap/").unwrap()).with_auth(caller()));
    let q = PlanPriceQuery {
        id: "Silverq7k2d9w".into(),
        region: Some("westus".into()),
        username: Some("ana.ribeiro@fabrikam.test".into()),
    };
    let price = sim.plan_price(q).await.unwrap();
    assert_eq!(price.as_str(), "Silver Hosting: $25.00 per month + usage");
    let q = AddonPriceQuery {
        id: "ExtraDbm4t9r2".into(),
        subscription_id: Some("90f94f4c-4679-406a-b6f4-4814d281b3fc".into()),
        ..Default::default()
    };
    assert!(sim.addon_price(q).await.unwrap().is_empty());
    let got = pricer.received();
    assert_eq!(got[0].method, "GET");
    assert_eq!(
        got[0].path_and_query,
        "/wap/planPrice?id=Silverq7k2d9w&region=westus&username=ana.ribeiro%40fabrikam.test"
    );
    assert_eq!(
        got[1].path_and_query,
        "/wap/addonPrice?id=ExtraDbm4t9r2&subscriptionid=90f94f4c-4679-406a-b6f4-4814d281b3fc"
    );
    assert_eq!(got[0].header("authorization").unwrap(), caller().header_value());
    sim.shutdown().await;
}

/// The approval fixtures are what a subscriber receives: their shape matches what the sim sends.
#[tokio::test]
async fn sent_bodies_have_the_members_of_the_fixture() {
    let sub = TestServer::start(|_| Reply::status(204)).await;
    let sim = sim().await;
    sim.register_subscriber(NotificationSubscriber::billing("b", sub.url.clone()));
    sim.create_subscription(CreateSubscription::new("lena.vogel@northwind.test", public_plan(&sim))).await;
    let sent: Value = serde_json::from_slice(&sub.received()[0].body).unwrap();
    let fixture: Value =
        serde_json::from_slice(&std::fs::read(common::fixtures().join("approval/create-subscription.json")).unwrap())
            .unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
    assert_eq!(keys(&sent), keys(&fixture));
    assert_eq!(keys(&sent["Entity"]), keys(&fixture["Entity"]));
    for member in ["State", "Method"] {
        assert_eq!(sent[member], fixture[member], "{member}");
    }
    for member in ["State", "Created", "CoAdminNames", "AddOnReferences", "Services"] {
        assert_eq!(sent["Entity"][member], fixture["Entity"][member], "Entity.{member}");
    }
    sim.shutdown().await;
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn trusted_outbound_certificates_are_checked_at_start() {
    let err = WapSim::builder().empty().trust_outbound_certificate_pem("not a certificate").start().await.unwrap_err();
    assert!(err.to_string().contains("CERTIFICATE"), "{err}");
    // a real PEM is accepted (here the Usage Service's own self-signed certificate)
    let https = WapSim::builder().empty().tls(true).start().await.unwrap();
    let pem = https.tls_certificate_pem().unwrap();
    let sim = WapSim::builder().empty().trust_outbound_certificate_pem(pem).start().await.unwrap();
    sim.shutdown().await;
    https.shutdown().await;
}
