//! [`PricingResponder`]: the price string WAP shows a tenant for a plan or an add-on (docs/protocol/approval-and-pricing.md §4).
//!
//! A responder returns `Some(price)` or `None` for an unknown id (a lookup failure is also `None`: an empty price
//! never blocks a sale). The adapter removes control characters and cuts the text to `PricingMaxLength`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use wap_types::{AddonPriceQuery, PlanPriceQuery};

/// Answers `GET planPrice` and `GET addonPrice`.
#[async_trait]
pub trait PricingResponder: Send + Sync + 'static {
    /// The price of a plan (`id`, `region`, `username`); `None` = unknown.
    async fn plan_price(&self, query: &PlanPriceQuery) -> Option<String>;

    /// The price of an add-on (`id`, `region`, `username`, `subscriptionid`); `None` = unknown.
    async fn addon_price(&self, query: &AddonPriceQuery) -> Option<String>;
}

#[async_trait]
impl<T: PricingResponder + ?Sized> PricingResponder for Arc<T> {
    async fn plan_price(&self, query: &PlanPriceQuery) -> Option<String> {
        (**self).plan_price(query).await
    }

    async fn addon_price(&self, query: &AddonPriceQuery) -> Option<String> {
        (**self).addon_price(query).await
    }
}

/// No pricing: the responder answers 404 on the pricing paths (`PricingResponderEnabled = false`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPricing;

#[async_trait]
impl PricingResponder for NoPricing {
    async fn plan_price(&self, _query: &PlanPriceQuery) -> Option<String> {
        None
    }

    async fn addon_price(&self, _query: &AddonPriceQuery) -> Option<String> {
        None
    }
}

/// Fixed prices by id: plans and add-ons, ids compared ignoring ASCII case (WAP ids are not case-stable).
///
/// ```
/// use wap_responder::PriceTable;
/// let prices = PriceTable::new()
///     .plan("Silverq7k2d9w", "Silver Hosting: $25.00 per month + usage")
///     .add_on("ExtraDbm4t9r2", "Extra Database: $4.00 per month");
/// assert_eq!(prices.plan_price_of("silverq7k2d9w"), Some("Silver Hosting: $25.00 per month + usage"));
/// assert_eq!(prices.add_on_price_of("Nope"), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    plans: HashMap<String, String>,
    add_ons: HashMap<String, String>,
}

impl PriceTable {
    /// An empty table (every id unknown).
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// Adds or replaces a plan price.
    pub fn plan(mut self, id: impl AsRef<str>, price: impl Into<String>) -> Self {
        self.plans.insert(id.as_ref().to_ascii_lowercase(), price.into());
        self
    }

    /// Adds or replaces an add-on price.
    pub fn add_on(mut self, id: impl AsRef<str>, price: impl Into<String>) -> Self {
        self.add_ons.insert(id.as_ref().to_ascii_lowercase(), price.into());
        self
    }

    /// The price of a plan id.
    pub fn plan_price_of(&self, id: &str) -> Option<&str> {
        self.plans.get(&id.to_ascii_lowercase()).map(String::as_str)
    }

    /// The price of an add-on id.
    pub fn add_on_price_of(&self, id: &str) -> Option<&str> {
        self.add_ons.get(&id.to_ascii_lowercase()).map(String::as_str)
    }
}

#[async_trait]
impl PricingResponder for PriceTable {
    async fn plan_price(&self, query: &PlanPriceQuery) -> Option<String> {
        self.plan_price_of(&query.id).map(str::to_owned)
    }

    async fn addon_price(&self, query: &AddonPriceQuery) -> Option<String> {
        self.add_on_price_of(&query.id).map(str::to_owned)
    }
}

type PlanFn = Arc<dyn Fn(PlanPriceQuery) -> BoxFuture<'static, Option<String>> + Send + Sync>;
type AddOnFn = Arc<dyn Fn(AddonPriceQuery) -> BoxFuture<'static, Option<String>> + Send + Sync>;

/// A [`PricingResponder`] made of two closures returning futures of `Option<String>`.
///
/// ```
/// use wap_responder::FnPricing;
/// let pricing = FnPricing::new(
///     |q| async move { (q.id == "Silverq7k2d9w").then(|| "Silver: $25.00 per month".to_owned()) },
///     |_q| async { None },
/// );
/// # let _ = pricing;
/// ```
#[derive(Clone)]
pub struct FnPricing {
    plan: PlanFn,
    add_on: AddOnFn,
}

impl fmt::Debug for FnPricing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnPricing").finish_non_exhaustive()
    }
}

impl FnPricing {
    /// Pricing from a plan closure and an add-on closure (each gets an owned copy of the query).
    pub fn new<F1, Fut1, F2, Fut2>(plan: F1, add_on: F2) -> Self
    where
        F1: Fn(PlanPriceQuery) -> Fut1 + Send + Sync + 'static,
        Fut1: Future<Output = Option<String>> + Send + 'static,
        F2: Fn(AddonPriceQuery) -> Fut2 + Send + Sync + 'static,
        Fut2: Future<Output = Option<String>> + Send + 'static,
    {
        FnPricing { plan: Arc::new(move |q| Box::pin(plan(q))), add_on: Arc::new(move |q| Box::pin(add_on(q))) }
    }
}

#[async_trait]
impl PricingResponder for FnPricing {
    async fn plan_price(&self, query: &PlanPriceQuery) -> Option<String> {
        (self.plan)(query.clone()).await
    }

    async fn addon_price(&self, query: &AddonPriceQuery) -> Option<String> {
        (self.add_on)(query.clone()).await
    }
}
