//! [`HostBillPricing`]: WAP's plan and add-on price calls answered from HostBill's product and add-on prices.
//!
//! The prices are read from HostBill (`getOrderPages` + `getProducts`, `getAddons`) into a cache, refreshed on a
//! timer ([`HostBillPricing::spawn_refresh`]). A price call **never** waits for HostBill: it answers from the cache
//! (a stale price after a failed refresh, the last good one) or "no price" (`None`: the responder's unknown-price
//! answer) when the id is unmapped or nothing was read yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wap_responder::PricingResponder;
use wap_types::{AddonPriceQuery, PlanPriceQuery};

use crate::client::HostBillClient;
use crate::error::Error;
use crate::types::Priced;

/// What prices which WAP id, and how a price reads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostBillPricingConfig {
    /// WAP plan id (lower case) → HostBill product id.
    pub plans: BTreeMap<String, u64>,
    /// WAP add-on id (lower case) → HostBill add-on id.
    pub addons: BTreeMap<String, u64>,
    /// The billing cycle whose price is shown (default `m`).
    pub cycle: String,
    /// Written before the amount (default `$`).
    pub currency_prefix: String,
    /// Written after the amount (default none, e.g. ` EUR`).
    pub currency_suffix: String,
}

impl Default for HostBillPricingConfig {
    fn default() -> Self {
        HostBillPricingConfig {
            plans: BTreeMap::new(),
            addons: BTreeMap::new(),
            cycle: "m".into(),
            currency_prefix: "$".into(),
            currency_suffix: String::new(),
        }
    }
}

impl HostBillPricingConfig {
    /// Monthly prices in dollars, no mappings yet.
    pub fn new() -> Self {
        HostBillPricingConfig::default()
    }

    /// Prices WAP plan `plan_id` as HostBill product `product_id`.
    pub fn plan(mut self, plan_id: &str, product_id: u64) -> Self {
        self.plans.insert(plan_id.to_ascii_lowercase(), product_id);
        self
    }

    /// Prices WAP add-on `addon_id` as HostBill add-on `id`.
    pub fn addon(mut self, addon_id: &str, id: u64) -> Self {
        self.addons.insert(addon_id.to_ascii_lowercase(), id);
        self
    }

    /// The billing cycle shown.
    pub fn cycle(mut self, cycle: &str) -> Self {
        self.cycle = cycle.to_owned();
        self
    }

    /// The currency's prefix and suffix.
    pub fn currency(mut self, prefix: &str, suffix: &str) -> Self {
        self.currency_prefix = prefix.to_owned();
        self.currency_suffix = suffix.to_owned();
        self
    }

    fn cycle_word(&self) -> &str {
        match self.cycle.as_str() {
            "m" => "per month",
            "q" => "per quarter",
            "s" => "per half-year",
            "a" => "per year",
            "b" => "per two years",
            "t" => "per three years",
            "d" => "per day",
            "w" => "per week",
            "h" => "per hour",
            "Once" | "once" => "once",
            _ => "per cycle",
        }
    }

    /// The price text of a product or add-on: `Gold: $25.00 per month` (+ ` + $5.00 setup`), or `None` when it
    /// has no price in the cycle.
    pub fn price_text(&self, item: &Priced) -> Option<String> {
        let amount = item.prices.get(&self.cycle)?;
        let money = |a: f64| format!("{}{a:.2}{}", self.currency_prefix, self.currency_suffix);
        let mut text = format!("{}: {} {}", item.name, money(*amount), self.cycle_word());
        if let Some(setup) = item.setup.get(&self.cycle) {
            text.push_str(&format!(" + {} setup", money(*setup)));
        }
        Some(text)
    }
}

/// The cache's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PriceCacheStatus {
    /// When the last refresh succeeded.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Products priced.
    pub products: usize,
    /// Add-ons priced.
    pub addons: usize,
    /// The last refresh's error, if it failed (the cache keeps the previous prices).
    pub last_error: Option<String>,
    /// Refreshes that succeeded.
    pub refreshes: u64,
}

#[derive(Debug, Default)]
struct Cache {
    products: HashMap<u64, String>,
    addons: HashMap<u64, String>,
    status: PriceCacheStatus,
}

/// A [`PricingResponder`] answering from HostBill's prices, cached. Cheap to clone (clones share the cache).
#[derive(Debug, Clone)]
pub struct HostBillPricing {
    client: HostBillClient,
    config: Arc<HostBillPricingConfig>,
    cache: Arc<RwLock<Cache>>,
}

impl HostBillPricing {
    /// Pricing over `client` with `config`; the cache is empty until [`HostBillPricing::refresh`].
    pub fn new(client: HostBillClient, config: HostBillPricingConfig) -> Self {
        HostBillPricing { client, config: Arc::new(config), cache: Arc::default() }
    }

    /// Reads every product and add-on price from HostBill into the cache. On failure the cache keeps its prices
    /// and records the error.
    pub async fn refresh(&self) -> Result<(), Error> {
        match self.read_prices().await {
            Ok((products, addons)) => {
                let mut c = self.cache.write().unwrap_or_else(|p| p.into_inner());
                c.status.products = products.len();
                c.status.addons = addons.len();
                c.status.refreshed_at = Some(Utc::now());
                c.status.last_error = None;
                c.status.refreshes += 1;
                c.products = products;
                c.addons = addons;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "HostBill price refresh failed; answering from the previous prices");
                self.cache.write().unwrap_or_else(|p| p.into_inner()).status.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    async fn read_prices(&self) -> Result<(HashMap<u64, String>, HashMap<u64, String>), Error> {
        let mut products = HashMap::new();
        for page in self.client.get_order_pages().await? {
            for p in self.client.get_products(page).await? {
                if let Some(text) = self.config.price_text(&p) {
                    products.insert(p.id, text);
                }
            }
        }
        let mut addons = HashMap::new();
        for a in self.client.get_addons().await? {
            if let Some(text) = self.config.price_text(&a) {
                addons.insert(a.id, text);
            }
        }
        Ok((products, addons))
    }

    /// Refreshes now and then every `every`, until the returned task is aborted (or the runtime ends).
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let _ = me.refresh().await;
            }
        })
    }

    /// The cache's state.
    pub fn status(&self) -> PriceCacheStatus {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).status.clone()
    }

    /// The cached price of a WAP plan.
    pub fn plan_price_of(&self, plan_id: &str) -> Option<String> {
        let product = self.config.plans.get(&plan_id.to_ascii_lowercase())?;
        self.cache.read().unwrap_or_else(|p| p.into_inner()).products.get(product).cloned()
    }

    /// The cached price of a WAP add-on.
    pub fn addon_price_of(&self, addon_id: &str) -> Option<String> {
        let addon = self.config.addons.get(&addon_id.to_ascii_lowercase())?;
        self.cache.read().unwrap_or_else(|p| p.into_inner()).addons.get(addon).cloned()
    }
}

#[async_trait]
impl PricingResponder for HostBillPricing {
    async fn plan_price(&self, query: &PlanPriceQuery) -> Option<String> {
        self.plan_price_of(&query.id)
    }

    async fn addon_price(&self, query: &AddonPriceQuery) -> Option<String> {
        self.addon_price_of(&query.id)
    }
}
