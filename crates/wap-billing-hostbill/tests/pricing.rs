//! WAP's price calls answered from HostBill's prices: wap-sim's pricing caller (`GET planPrice` / `addonPrice`
//! on the registered billing endpoint) → the responder with `HostBillPricing` → its cache of the double's prices.
//! A slow or failing HostBill never blocks an answer: the last good price, or a clear "no price".

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::{client, client_with_timeout, prepared};
use tokio::net::TcpListener;
use wap_billing_hostbill::double::{Fault, FaultKind};
use wap_billing_hostbill::{HostBillPricing, HostBillPricingConfig};
use wap_responder::{
    serve, BasicCredentials, Decision, FnApprover, Responder, ResponderConfig, ResponderServer, ServerConfig,
};
use wap_sim::{DatasetSpec, NotificationSubscriber, WapSim};
use wap_types::{AddonPriceQuery, PlanPriceQuery};

fn credentials() -> BasicCredentials {
    BasicCredentials::new("wapbilling", "pricing-Pa55")
}

async fn serve_pricing(pricing: HostBillPricing) -> ResponderServer {
    let approver = FnApprover::new(
        |_| async { Ok::<_, Infallible>(Decision::Approve) },
        |_| async { Ok::<_, Infallible>(Decision::Approve) },
    );
    let responder = Responder::with_pricing(approver, pricing, ResponderConfig::basic(credentials()));
    serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), responder, ServerConfig::default()).unwrap()
}

async fn sim_with(server: &ResponderServer) -> WapSim {
    let spec =
        DatasetSpec { plans: 2, add_ons: 2, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() };
    let sim = WapSim::builder().seed(3).dataset(spec).start().await.unwrap();
    let endpoint = url::Url::parse(&server.url()).unwrap();
    sim.register_subscriber(NotificationSubscriber::billing("wap-billing", endpoint).with_auth(credentials()));
    sim
}

fn plan(id: &str) -> PlanPriceQuery {
    PlanPriceQuery { id: id.into(), region: Some("westeurope".into()), username: Some("t@example.com".into()) }
}

fn addon(id: &str) -> AddonPriceQuery {
    AddonPriceQuery { id: id.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_addon_prices_come_from_hostbill_through_wap_sim() {
    let double = prepared().start().await.unwrap();
    let probe = WapSim::builder()
        .seed(3)
        .dataset(DatasetSpec {
            plans: 2,
            add_ons: 2,
            accounts: 0,
            subscriptions: 0,
            usage_records: 0,
            ..DatasetSpec::small()
        })
        .start()
        .await
        .unwrap();
    let (plans, addons) = (probe.plans(), probe.add_ons());
    probe.shutdown().await;
    let config = HostBillPricingConfig::new().plan(&plans[0].id, 10).plan(&plans[1].id, 11).addon(&addons[0].id, 20);
    let pricing = HostBillPricing::new(client(&double), config);
    pricing.refresh().await.unwrap();
    assert_eq!((pricing.status().products, pricing.status().addons), (2, 1));
    let server = serve_pricing(pricing.clone()).await;
    let sim = sim_with(&server).await;

    let gold = sim.plan_price(plan(&plans[0].id)).await.unwrap();
    assert_eq!(gold.as_str(), "WAP Gold: $25.00 per month");
    let silver = sim.plan_price(plan(&plans[1].id.to_ascii_uppercase())).await.unwrap();
    assert_eq!(silver.as_str(), "WAP Silver: $12.50 per month", "ids compared ignoring case");
    let ips = sim.addon_price(addon(&addons[0].id)).await.unwrap();
    assert_eq!(ips.as_str(), "Extra IPs: $4.00 per month");
    assert!(sim.addon_price(addon(&addons[1].id)).await.unwrap().is_empty(), "an unmapped add-on has no price");

    // The administrator changes a price in HostBill: the next refresh serves it.
    double.with_state(|s| {
        s.products.get_mut(&10).unwrap().prices.insert("m".into(), "27.50".into());
    });
    pricing.refresh().await.unwrap();
    assert_eq!(sim.plan_price(plan(&plans[0].id)).await.unwrap().as_str(), "WAP Gold: $27.50 per month");
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hostbill_never_blocks_a_price_answer() {
    let double = prepared().start().await.unwrap();
    // Nothing read yet and HostBill hangs: a clear "no price", at once.
    let slow = client_with_timeout(&double, Duration::from_secs(30));
    let pricing = HostBillPricing::new(slow, HostBillPricingConfig::new().plan("Gold", 10).cycle("a"));
    double.inject(Fault::on("getOrderPages", FaultKind::TimeoutAfterCommit));
    let refresh = {
        let p = pricing.clone();
        tokio::spawn(async move { p.refresh().await })
    };
    let server = serve_pricing(pricing.clone()).await;
    let sim = sim_with(&server).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), sim.plan_price(plan("Gold"))).await;
    assert!(answer.expect("answered while HostBill hangs").unwrap().is_empty());
    refresh.abort();

    // Read once (yearly prices with a setup fee), then HostBill fails: the last good price is served.
    pricing.refresh().await.unwrap();
    assert_eq!(pricing.plan_price_of("gold").as_deref(), Some("WAP Gold: $250.00 per year + $10.00 setup"));
    double.inject(Fault::on("getOrderPages", FaultKind::HtmlErrorPage));
    assert!(pricing.refresh().await.is_err());
    assert!(pricing.status().last_error.is_some());
    assert_eq!(sim.plan_price(plan("Gold")).await.unwrap().as_str(), "WAP Gold: $250.00 per year + $10.00 setup");
    assert_eq!(pricing.status().refreshes, 1);

    // The refresher picks a change up on its timer.
    let task = pricing.spawn_refresh(Duration::from_millis(20));
    double.with_state(|s| {
        s.products.get_mut(&10).unwrap().prices.insert("a".into(), "300.00".into());
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pricing.plan_price_of("gold").unwrap().contains("300.00") {
        assert!(tokio::time::Instant::now() < deadline, "the timer never refreshed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    server.shutdown().await;
    sim.shutdown().await;
}
