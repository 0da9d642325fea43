//! An approval and pricing responder for WAP: approves subscriptions only for plans the billing system sells and
//! accounts in good standing, add-ons only for subscriptions it knows, and prices plans from a table.
//!
//! `cargo run --example approval_responder` starts a simulated WAP (`wap-sim`) on loopback, registers the
//! responder as its `BillingService` notification subscriber, and runs a few tenant actions: approved ones appear
//! on the `/billing/*` pull feeds, denied ones do not.
//!
//! `cargo run --example approval_responder -- --serve 0.0.0.0:8443` only serves the responder (for a real WAP),
//! with the credentials in `WAP_BILLING_USERNAME` / `WAP_BILLING_PASSWORD`, until Ctrl-C; register it with
//! `Set-MgmtSvcNotificationSubscriber` as the `wap-responder` README shows.

#[path = "support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use wap_billing::responder::{
    serve, serve_until, AddOnApproval, PricingResponder, Responder, ResponderConfig, ServerConfig,
    SubscriptionApproval, SubscriptionApprover,
};
use wap_billing::sim::{ActionOutcome, CreateSubscription, NotificationSubscriber, SubscriptionUpdate, WapSim};
use wap_billing::types::{AddonPriceQuery, BasicCredentials, Decision, FeedKind, PlanPriceQuery, PlanState};

/// What the billing system knows: the plans it sells (with their price), the accounts with an overdue invoice,
/// and the subscriptions it has.
#[derive(Debug, Default)]
struct BillingSystem {
    plan_prices: HashMap<String, String>,
    overdue_accounts: HashSet<String>,
    subscriptions: Mutex<HashSet<String>>,
}

#[wap_billing::responder::async_trait]
impl SubscriptionApprover for BillingSystem {
    type Error = Infallible;

    async fn create_subscription(&self, a: SubscriptionApproval) -> Result<Decision, Infallible> {
        if !a.plan_id().is_some_and(|p| self.plan_prices.contains_key(p)) {
            return Ok(Decision::deny("this plan is not sold through billing"));
        }
        let account = a.account().unwrap_or_default().to_ascii_lowercase();
        if self.overdue_accounts.contains(&account) {
            return Ok(Decision::deny(format!("account {account} has an overdue invoice")));
        }
        // The subscription becomes final only when it shows on /billing/subscriptions; remembering it here lets
        // add-ons be bought for it right away.
        self.subscriptions.lock().unwrap().insert(a.subscription().subscription_id.to_ascii_lowercase());
        Ok(Decision::Approve)
    }

    async fn create_subscription_addon(&self, a: AddOnApproval) -> Result<Decision, Infallible> {
        let known =
            a.subscription_id().is_some_and(|s| self.subscriptions.lock().unwrap().contains(&s.to_ascii_lowercase()));
        Ok(if known { Decision::Approve } else { Decision::deny("unknown subscription") })
    }
}

#[wap_billing::responder::async_trait]
impl PricingResponder for BillingSystem {
    async fn plan_price(&self, query: &PlanPriceQuery) -> Option<String> {
        self.plan_prices.get(&query.id).cloned()
    }

    async fn addon_price(&self, _query: &AddonPriceQuery) -> Option<String> {
        None
    }
}

fn show(what: &str, outcome: &ActionOutcome, sim: &WapSim, feed: FeedKind) {
    let on_feed = outcome.event_id.is_some_and(|id| sim.event_ids(feed).contains(&id));
    println!(
        "{what:<52} -> {:<9} (event {:>5}, on /billing/{}: {})",
        format!("{:?}", outcome.status),
        outcome.event_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        feed.name(),
        if on_feed { "yes" } else { "no" }
    );
}

async fn standalone(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let username = std::env::var("WAP_BILLING_USERNAME").unwrap_or_else(|_| "wapcaller".into());
    let password = std::env::var("WAP_BILLING_PASSWORD").map_err(|_| "set WAP_BILLING_PASSWORD")?;
    let billing = Arc::new(BillingSystem {
        plan_prices: [("Silverq7k2d9w".to_owned(), "Silver Hosting: $25.00 per month + usage".to_owned())].into(),
        ..Default::default()
    });
    let config = ResponderConfig::basic(BasicCredentials::new(username, password)).base_path("/wap/");
    let listener = tokio::net::TcpListener::bind(address).await?;
    let port = listener.local_addr()?.port();
    println!("serving on {address}: register -Endpoint 'http://<this host>:{port}/wap/' with Set-MgmtSvcNotificationSubscriber");
    let responder = Responder::with_pricing(billing.clone(), billing, config);
    serve_until(listener, responder, ServerConfig::default(), support::shutdown_signal()).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_logging("wap_responder=info");
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        return standalone(args.get(i + 1).map(String::as_str).unwrap_or("0.0.0.0:8443")).await;
    }

    // A simulated WAP with a small seeded catalogue.
    let sim = WapSim::builder().seed(7).start().await?;
    let mut plans: Vec<_> = sim.plans().into_iter().filter(|p| p.state != Some(PlanState::Decommissioned)).collect();
    plans.sort_by(|a, b| a.id.cmp(&b.id));
    let mut accounts = sim.accounts();
    accounts.sort();
    let (sold, not_sold) = (&plans[0], &plans[1]);
    let (good, overdue) = (&accounts[0], &accounts[1]);

    let billing = Arc::new(BillingSystem {
        plan_prices: [(
            sold.id.clone(),
            format!("{}: $9.90 per month + usage", sold.display_name.as_deref().unwrap_or(&sold.id)),
        )]
        .into(),
        overdue_accounts: [overdue.to_ascii_lowercase()].into(),
        subscriptions: Mutex::new(
            sim.subscriptions().into_iter().map(|s| s.subscription_id.to_ascii_lowercase()).collect(),
        ),
    });

    // The responder, as WAP's BillingService subscriber.
    let credentials = BasicCredentials::new("wapcaller", "S3cure!pass");
    let config = ResponderConfig::basic(credentials.clone()).base_path("/wap/");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server =
        serve(listener, Responder::with_pricing(billing.clone(), billing.clone(), config), ServerConfig::default())?;
    let endpoint = server.endpoint_url("/wap/");
    println!("responder at {endpoint}; simulated WAP at {}", sim.usage_service_url());
    println!(
        "(on a real WAP: Set-MgmtSvcNotificationSubscriber -Name 'wap-billing' -Enabled $true -SubscriberType BillingService \
         -Endpoint '{endpoint}' -AuthenticationMode Basic -AuthenticationUsername 'wapcaller' -AuthenticationPassword '<secret>')\n"
    );
    // `Url::join` with an absolute URL parses it.
    let endpoint_url = sim.usage_service_url().join(&endpoint)?;
    sim.register_subscriber(NotificationSubscriber::billing("wap-billing", endpoint_url).with_auth(credentials));

    // Tenant actions.
    let bought = sim.create_subscription(CreateSubscription::new(good, &sold.id)).await;
    show(&format!("{good} buys {}", sold.id), &bought, &sim, FeedKind::Subscriptions);
    let refused = sim.create_subscription(CreateSubscription::new(good, &not_sold.id)).await;
    show(&format!("{good} buys {} (not sold)", not_sold.id), &refused, &sim, FeedKind::Subscriptions);
    let blocked = sim.create_subscription(CreateSubscription::new(overdue, &sold.id)).await;
    show(&format!("{overdue} (overdue) buys {}", sold.id), &blocked, &sim, FeedKind::Subscriptions);
    if let (Some(sub), Some(add_on)) = (bought.subscription_id.as_deref(), sim.add_ons().first()) {
        let add = sim.add_subscription_addon(sub, &add_on.id).await;
        show(&format!("add-on {} for the new subscription", add_on.id), &add, &sim, FeedKind::SubscriptionAddons);
        let suspend = sim.update_subscription(sub, SubscriptionUpdate::suspend()).await;
        show("suspend it (updates are always approved)", &suspend, &sim, FeedKind::Subscriptions);
        let cancel = sim.delete_subscription(sub).await;
        show("cancel it", &cancel, &sim, FeedKind::Subscriptions);
    }

    // Prices as the tenant portal shows them.
    for plan in [sold, not_sold] {
        let price =
            sim.plan_price(PlanPriceQuery { id: plan.id.clone(), region: None, username: Some(good.clone()) }).await?;
        println!("price of {:<16} {:?}", plan.id, price.as_str());
    }

    server.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
