//! Pricing over real HTTP: both encodings, unknown ids (200 `""` or 404), sanitizing, query-name case, missing
//! `id`, failing pricing responders.

mod common;

use std::sync::Arc;
use std::time::Duration;

use wap_responder::{FnPricing, PriceEncoding, PriceTable, Responder, UnknownPriceStatus};

use common::*;

fn approver() -> Arc<CatalogApprover> {
    Arc::new(CatalogApprover::new([], [], []))
}

fn table() -> PriceTable {
    PriceTable::new()
        .plan("Silverq7k2d9w", "Silver Hosting: $25.00 per month + usage")
        .plan("Quote", "Gold \"Plus\": 30 €\r\nper month\t(VAT incl.)")
        .plan("Long", "x".repeat(1000))
        .add_on("ExtraDbm4t9r2", "Extra Database: $4.00 per month")
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Answer {
    send(addr, "GET", path, &[("Authorization", &auth_header())], b"").await
}

#[tokio::test]
async fn json_string_literals_by_default_sanitized_and_cut() {
    let server = start(Responder::with_pricing(approver(), table(), basic_config())).await;
    let addr = server.local_addr();
    let a = get(addr, "/wap/planPrice?id=Silverq7k2d9w&region=westeurope&username=ana%40fabrikam.test").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(a.text(), "\"Silver Hosting: $25.00 per month + usage\"");

    let a = get(addr, "/planprice?ID=quote").await;
    let price: String = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(price, "Gold \"Plus\": 30 €per month(VAT incl.)", "control characters removed, escaped as JSON");

    let a = get(addr, "/planPrice?id=Long").await;
    let price: String = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(price.chars().count(), 256, "cut to PricingMaxLength");

    let a = get(addr, "/a/b/AddonPrice/?id=ExtraDbm4t9r2&subscriptionId=90f94f4c").await;
    assert_eq!(a.text(), "\"Extra Database: $4.00 per month\"");

    let a = get(addr, "/planPrice?id=Unknown1").await;
    assert_eq!((a.status, a.text().as_str()), (200, "\"\""), "unknown id: empty price");
    server.shutdown().await;
}

#[tokio::test]
async fn text_encoding_and_404_for_unknown_ids_when_configured() {
    let config = basic_config().price_encoding(PriceEncoding::Text).unknown_price_status(UnknownPriceStatus::NotFound);
    let server = start(Responder::with_pricing(approver(), table(), config)).await;
    let addr = server.local_addr();
    let a = get(addr, "/planPrice?id=Silverq7k2d9w").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(a.text(), "Silver Hosting: $25.00 per month + usage");
    let a = get(addr, "/addonPrice?id=NoSuchAddOn").await;
    assert_eq!(a.status, 404);
    assert!(a.text().contains("NoSuchAddOn"), "{}", a.text());
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_empty_id_is_400() {
    let server = start(Responder::with_pricing(approver(), table(), basic_config())).await;
    for path in ["/planPrice", "/planPrice?region=westeurope", "/addonPrice?id=", "/addonPrice?identifier=x"] {
        let a = get(server.local_addr(), path).await;
        assert_eq!(a.status, 400, "{path}");
        assert!(a.text().contains("`id`"), "{path}: {}", a.text());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_query_reaches_the_pricing_responder_and_failures_answer_an_empty_price() {
    let pricing = FnPricing::new(
        |q| async move {
            match q.id.as_str() {
                "panic" => panic!("pricing bug"),
                "hang" => std::future::pending().await,
                _ => Some(format!("{}|{:?}|{:?}", q.id, q.region, q.username)),
            }
        },
        |q| async move { Some(format!("{}|{:?}", q.id, q.subscription_id)) },
    );
    let config = basic_config().decision_budget(Duration::from_millis(300));
    let server = start(Responder::with_pricing(approver(), pricing, config)).await;
    let addr = server.local_addr();
    let a = get(addr, "/planPrice?id=p1&Region=west&USERNAME=a%40b.test").await;
    assert_eq!(serde_json::from_slice::<String>(&a.body).unwrap(), "p1|Some(\"west\")|Some(\"a@b.test\")");
    let a = get(addr, "/addonPrice?id=x&subscriptionid=S1").await;
    assert_eq!(serde_json::from_slice::<String>(&a.body).unwrap(), "x|Some(\"S1\")");
    for id in ["panic", "hang"] {
        let a = get(addr, &format!("/planPrice?id={id}")).await;
        assert_eq!((a.status, a.text().as_str()), (200, "\"\""), "{id}: an empty price never blocks a sale");
    }
    server.shutdown().await;
}
