//! Tenant actions of a simulated WAP (`wap-sim`) against a served responder: approved actions appear on the pull
//! feeds, denied ones do not; updates are approved whatever the approver thinks; prices reach the portal.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use wap_responder::{
    AddOnApproval, Decision, PriceTable, Responder, ResponderConfig, SubscriptionApproval, SubscriptionApprover,
};
use wap_sim::{ActionStatus, CallResult, CreateSubscription, NotificationSubscriber, SubscriptionUpdate, WapSim};
use wap_types::{AddonPriceQuery, FeedKind, PlanPriceQuery, PlanState};

use common::*;

/// A shop's rules: known plans and add-ons only, add-ons only for subscriptions the billing system knows, a
/// blocked account, and subscriptions whose cancellation must go through the billing desk.
#[derive(Debug, Default)]
struct Shop {
    plans: HashSet<String>,
    add_ons: HashSet<String>,
    subscriptions: Mutex<HashSet<String>>,
    blocked_accounts: HashSet<String>,
    desk_only: HashSet<String>,
    asked: Mutex<Vec<i64>>,
}

#[async_trait::async_trait]
impl SubscriptionApprover for Shop {
    type Error = Infallible;

    async fn create_subscription(&self, a: SubscriptionApproval) -> Result<Decision, Infallible> {
        self.asked.lock().unwrap().push(a.event_id());
        if a.account().is_some_and(|acc| self.blocked_accounts.contains(acc)) {
            return Ok(Decision::deny("account has an overdue invoice"));
        }
        if !a.plan_id().is_some_and(|p| self.plans.contains(p)) {
            return Ok(Decision::deny("plan not sold"));
        }
        // The billing system now knows the subscription (in a real adapter: once it is on the feed).
        self.subscriptions.lock().unwrap().insert(a.subscription().subscription_id.to_ascii_lowercase());
        Ok(Decision::Approve)
    }

    async fn delete_subscription(&self, a: SubscriptionApproval) -> Result<Decision, Infallible> {
        self.asked.lock().unwrap().push(a.event_id());
        if self.desk_only.contains(&a.subscription().subscription_id.to_ascii_lowercase()) {
            return Ok(Decision::deny("cancel through the billing desk"));
        }
        Ok(Decision::Approve)
    }

    async fn create_subscription_addon(&self, a: AddOnApproval) -> Result<Decision, Infallible> {
        self.asked.lock().unwrap().push(a.event_id());
        let known_sub =
            a.subscription_id().is_some_and(|s| self.subscriptions.lock().unwrap().contains(&s.to_ascii_lowercase()));
        Ok(if self.add_ons.contains(a.add_on_id()) && known_sub { Decision::Approve } else { Decision::deny("no") })
    }
}

fn on_feed(sim: &WapSim, feed: FeedKind, id: Option<i64>) -> bool {
    let id = id.expect("an event id was sent");
    sim.event_ids(feed).contains(&id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_actions_reach_the_feeds_and_denied_ones_do_not() {
    let sim = WapSim::builder().seed(11).start().await.unwrap();
    let mut plans: Vec<_> = sim.plans().into_iter().filter(|p| p.state != Some(PlanState::Decommissioned)).collect();
    plans.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(plans.len() >= 2, "the dataset has plans to sell");
    let mut add_ons = sim.add_ons();
    add_ons.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(add_ons.len() >= 2);
    let mut accounts = sim.accounts();
    accounts.sort();
    let (sold, not_sold) = (plans[0].id.clone(), plans[1].id.clone());
    let (good, blocked) = (accounts[0].clone(), accounts[1].clone());

    let shop = Arc::new(Shop {
        plans: [sold.clone()].into(),
        add_ons: [add_ons[0].id.clone()].into(),
        blocked_accounts: [blocked.clone()].into(),
        ..Default::default()
    });
    let prices = PriceTable::new().plan(&sold, "Silver: $25.00 per month\n+ usage");
    let config = ResponderConfig::basic(credentials()).base_path("/wap/");
    let server = start(Responder::with_pricing(shop.clone(), prices, config)).await;
    let endpoint = url::Url::parse(&server.endpoint_url("/wap/")).unwrap();
    sim.register_subscriber(NotificationSubscriber::billing("wap-billing", endpoint).with_auth(credentials()));

    // A: a sold plan for an account in good standing is committed; the others are not.
    let bought = sim.create_subscription(CreateSubscription::new(&good, &sold)).await;
    assert_eq!(bought.status, ActionStatus::Approved, "{bought:?}");
    assert_eq!(bought.calls[0].result, CallResult::Status(204));
    assert!(on_feed(&sim, FeedKind::Subscriptions, bought.event_id));
    let new_sub = bought.subscription_id.clone().unwrap();
    assert!(sim.subscriptions().iter().any(|s| s.subscription_id.eq_ignore_ascii_case(&new_sub)));

    let refused = sim.create_subscription(CreateSubscription::new(&good, &not_sold)).await;
    assert_eq!(refused.status, ActionStatus::Denied);
    assert_eq!(refused.calls[0].result, CallResult::Status(403));
    assert!(!on_feed(&sim, FeedKind::Subscriptions, refused.event_id));
    let blocked_try = sim.create_subscription(CreateSubscription::new(&blocked, &sold)).await;
    assert_eq!(blocked_try.status, ActionStatus::Denied);
    assert!(!on_feed(&sim, FeedKind::Subscriptions, blocked_try.event_id));

    // C: a mapped add-on for a known subscription is committed; an unmapped one, or one for a subscription the
    // billing system does not know, is not.
    let add = sim.add_subscription_addon(&new_sub, &add_ons[0].id).await;
    assert_eq!(add.status, ActionStatus::Approved, "{add:?}");
    assert!(on_feed(&sim, FeedKind::SubscriptionAddons, add.event_id));
    let unmapped = sim.add_subscription_addon(&new_sub, &add_ons[1].id).await;
    assert_eq!(unmapped.status, ActionStatus::Denied);
    assert!(!on_feed(&sim, FeedKind::SubscriptionAddons, unmapped.event_id));
    let other_sub = sim
        .subscriptions()
        .into_iter()
        .map(|s| s.subscription_id)
        .find(|s| !s.eq_ignore_ascii_case(&new_sub))
        .expect("the dataset has subscriptions");
    let unknown_sub = sim.add_subscription_addon(&other_sub, &add_ons[0].id).await;
    assert_eq!(unknown_sub.status, ActionStatus::Denied);
    assert!(!on_feed(&sim, FeedKind::SubscriptionAddons, unknown_sub.event_id));

    // E: updates are approved without asking, even for a subscription the shop would refuse anything.
    let asked_before = shop.asked.lock().unwrap().len();
    let suspend = sim.update_subscription(&other_sub, SubscriptionUpdate::suspend()).await;
    assert_eq!(suspend.status, ActionStatus::Approved, "{suspend:?}");
    assert!(on_feed(&sim, FeedKind::Subscriptions, suspend.event_id));
    assert_eq!(shop.asked.lock().unwrap().len(), asked_before, "updates never reach the approver");

    // D then B: the add-on removal and the cancellation of the new subscription are approved.
    let remove = sim.remove_subscription_addon(&new_sub, &add_ons[0].id).await;
    assert_eq!(remove.status, ActionStatus::Approved, "{remove:?}");
    assert!(on_feed(&sim, FeedKind::SubscriptionAddons, remove.event_id));
    let cancel = sim.delete_subscription(&new_sub).await;
    assert_eq!(cancel.status, ActionStatus::Approved, "{cancel:?}");
    assert!(on_feed(&sim, FeedKind::Subscriptions, cancel.event_id));

    // Every approval call carried a distinct event id, and the shop saw each once.
    let asked = shop.asked.lock().unwrap().clone();
    let unique: HashSet<_> = asked.iter().collect();
    assert_eq!(unique.len(), asked.len());

    // Pricing as the portal asks it: sanitized, JSON string literal; unknown → "".
    let price = sim
        .plan_price(PlanPriceQuery {
            id: sold.clone(),
            region: Some("westeurope".into()),
            username: Some(good.clone()),
        })
        .await
        .unwrap();
    assert_eq!(price.as_str(), "Silver: $25.00 per month+ usage");
    let none = sim.addon_price(AddonPriceQuery { id: add_ons[1].id.clone(), ..Default::default() }).await.unwrap();
    assert!(none.is_empty());

    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_refused_by_the_billing_desk_stays_off_the_feed_and_bad_credentials_deny() {
    let sim = WapSim::builder().seed(12).start().await.unwrap();
    let mut subs: Vec<String> = sim.subscriptions().into_iter().map(|s| s.subscription_id).collect();
    subs.sort();
    assert!(subs.len() >= 2);
    let shop = Arc::new(Shop { desk_only: [subs[0].to_ascii_lowercase()].into(), ..Default::default() });
    let server = start(Responder::new(shop.clone(), ResponderConfig::basic(credentials()))).await;
    let endpoint = url::Url::parse(&server.url()).unwrap();
    sim.register_subscriber(NotificationSubscriber::billing("wap-billing", endpoint.clone()).with_auth(credentials()));

    let refused = sim.delete_subscription(&subs[0]).await;
    assert_eq!(refused.status, ActionStatus::Denied);
    assert!(!on_feed(&sim, FeedKind::Subscriptions, refused.event_id));
    assert!(sim.subscriptions().iter().any(|s| s.subscription_id == subs[0]), "still there");
    let cancelled = sim.delete_subscription(&subs[1]).await;
    assert_eq!(cancelled.status, ActionStatus::Approved);
    assert!(on_feed(&sim, FeedKind::Subscriptions, cancelled.event_id));

    // WAP registered with the wrong password: every call gets 401, and WAP treats it as a denial.
    let wrong = wap_types::BasicCredentials::new(USER, "not-the-password");
    sim.register_subscriber(NotificationSubscriber::billing("wap-billing", endpoint).with_auth(wrong));
    let update = sim.update_subscription(&subs[0], SubscriptionUpdate::rename("renamed")).await;
    assert_eq!(update.calls[0].result, CallResult::Status(401));
    assert_eq!(update.status, ActionStatus::Denied);
    assert!(!on_feed(&sim, FeedKind::Subscriptions, update.event_id));

    server.shutdown().await;
    sim.shutdown().await;
}
