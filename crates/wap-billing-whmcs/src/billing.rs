//! [`WhmcsBilling`]: the engine's [`EventHandler`] for WHMCS: accounts → clients, plans and add-ons → the
//! products and product add-ons the administrator created, subscriptions → services, subscription add-ons →
//! service add-ons. Every create is preceded by a lookup, so a repeated event (after a crash, a timeout after
//! WHMCS committed, a retry) finds what the earlier attempt made instead of making it twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use wap_billing_engine::store::IdentityKind;
use wap_billing_engine::{EntityChange, EventContext, EventHandler, HandlerError, IdentityMap, UsagePeriod};
use wap_types::{AdminSubscription, AdminSubscriptionState, Plan, PlanAddon, PlanAddonReference};

use crate::client::{SubscriptionKey, WhmcsClient};
use crate::error::{Error, ErrorKind};
use crate::types::{InvoiceAction, NewClient, NewOrder, OrderItem, Service};

/// The actor recorded in the identity map's audit log.
const ACTOR: &str = "wap-billing-whmcs";

/// How WAP maps onto this WHMCS installation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WhmcsBillingConfig {
    /// The payment gateway orders are placed with (its system name, e.g. `mailin`).
    pub payment_method: String,
    /// Where the WAP subscription id is kept on a service.
    pub subscription_key: SubscriptionKey,
    /// WAP plan id → WHMCS product id (`pid`). The identity map, when configured, is asked first.
    pub plans: BTreeMap<String, u64>,
    /// WAP add-on id → WHMCS product add-on id. The identity map, when configured, is asked first.
    pub addons: BTreeMap<String, u64>,
    /// The billing cycle of new services (WHMCS's default when `None`).
    pub billing_cycle: Option<String>,
    /// `AcceptOrder autosetup=true`: run the product's provisioning module (off: WAP provisions).
    pub autosetup: bool,
    /// Usage: meter name (ASCII lower case) → unit price, as decimal text. A line's amount is its quantity times
    /// this price, rounded to cents.
    pub meter_prices: BTreeMap<String, String>,
    /// Usage: the unit price of a meter not in `meter_prices` (default `0.00`: billed at no charge, quantity shown).
    pub default_meter_price: String,
    /// Usage: when WHMCS invoices the billable items (default [`InvoiceAction::NextCron`]: the next daily cron run,
    /// after which reconciliation can find them on the invoice).
    pub usage_invoice_action: InvoiceAction,
    /// Usage: the period of a line (default [`UsagePeriod::Month`]).
    pub usage_period: UsagePeriod,
}

impl WhmcsBillingConfig {
    /// Orders paid with `payment_method`, the subscription id in the service's domain field, no mappings yet.
    pub fn new(payment_method: impl Into<String>) -> Self {
        WhmcsBillingConfig {
            payment_method: payment_method.into(),
            subscription_key: SubscriptionKey::Domain,
            plans: BTreeMap::new(),
            addons: BTreeMap::new(),
            billing_cycle: None,
            autosetup: false,
            meter_prices: BTreeMap::new(),
            default_meter_price: "0.00".to_owned(),
            usage_invoice_action: InvoiceAction::NextCron,
            usage_period: UsagePeriod::Month,
        }
    }

    /// Maps WAP plan `plan_id` to WHMCS product `pid`.
    pub fn plan(mut self, plan_id: &str, pid: u64) -> Self {
        self.plans.insert(plan_id.to_ascii_lowercase(), pid);
        self
    }

    /// Maps WAP add-on `addon_id` to WHMCS product add-on `id`.
    pub fn addon(mut self, addon_id: &str, id: u64) -> Self {
        self.addons.insert(addon_id.to_ascii_lowercase(), id);
        self
    }

    /// Bills usage of `meter` (any case) at `unit_price` (decimal text) per unit.
    pub fn meter_price(mut self, meter: &str, unit_price: impl Into<String>) -> Self {
        self.meter_prices.insert(meter.to_ascii_lowercase(), unit_price.into());
        self
    }

    /// When WHMCS invoices usage billable items.
    pub fn usage_invoice_action(mut self, action: InvoiceAction) -> Self {
        self.usage_invoice_action = action;
        self
    }

    /// The period of a usage line.
    pub fn usage_period(mut self, period: UsagePeriod) -> Self {
        self.usage_period = period;
        self
    }

    /// Keeps the WAP subscription id where `key` says.
    pub fn subscription_key(mut self, key: SubscriptionKey) -> Self {
        self.subscription_key = key;
        self
    }
}

/// The WHMCS billing system: the engine's [`EventHandler`] (events, lookup before every create) and
/// [`UsageHandler`](wap_billing_engine::UsageHandler) (usage lines as billable items on the journaled path, see
/// the crate README).
#[derive(Debug)]
pub struct WhmcsBilling {
    pub(crate) client: WhmcsClient,
    pub(crate) config: WhmcsBillingConfig,
    not_propagated: Mutex<BTreeSet<(&'static str, String)>>,
    /// WAP subscription id (lower case) → WHMCS client id, for usage.
    pub(crate) subscription_clients: Mutex<BTreeMap<String, u64>>,
    /// Usage batches by intent token: the lines WHMCS confirmed in this process.
    pub(crate) usage_log: Mutex<BTreeMap<String, crate::usage::LineLog>>,
}

fn failed(what: &str, e: Error) -> HandlerError {
    let message = format!("{what}: {e}");
    HandlerError::Failed { message, record_event_id: None, source: Some(Box::new(e)) }
}

fn is_gone(status: &str) -> bool {
    matches!(status, "Cancelled" | "Terminated" | "Fraud")
}

impl WhmcsBilling {
    /// The handler over `client` with `config`.
    pub fn new(client: WhmcsClient, config: WhmcsBillingConfig) -> Arc<Self> {
        Arc::new(WhmcsBilling {
            client,
            config,
            not_propagated: Mutex::new(BTreeSet::new()),
            subscription_clients: Mutex::new(BTreeMap::new()),
            usage_log: Mutex::new(BTreeMap::new()),
        })
    }

    /// The client.
    pub fn client(&self) -> &WhmcsClient {
        &self.client
    }

    /// The WAP plans (`("plan", id)`) and add-ons (`("addon", id)`) seen but not mapped to WHMCS yet: they are
    /// not propagated until the administrator maps them (in the configuration or the identity map).
    pub fn not_propagated(&self) -> Vec<(&'static str, String)> {
        self.not_propagated.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    async fn mapped(
        &self,
        identity: Option<&Arc<dyn IdentityMap>>,
        kind: IdentityKind,
        wap_id: &str,
    ) -> Result<Option<u64>, HandlerError> {
        if let Some(map) = identity {
            let found = map
                .billing_id(kind, wap_id)
                .await
                .map_err(|e| HandlerError::failed(format!("identity map lookup of {wap_id}: {e}")))?;
            if let Some(id) = found {
                let id = id.trim().parse().map_err(|_| {
                    HandlerError::failed(format!("identity map: {wap_id} is mapped to {id:?}, not a WHMCS id"))
                })?;
                return Ok(Some(id));
            }
        }
        let table = if kind == IdentityKind::Plan { &self.config.plans } else { &self.config.addons };
        Ok(table.get(&wap_id.to_ascii_lowercase()).copied())
    }

    /// Records a catalogue entry's mapping in the identity map, or notes it as not propagated.
    async fn catalogue(
        &self,
        ctx: &EventContext<'_>,
        kind: IdentityKind,
        label: &'static str,
        wap_id: &str,
    ) -> Result<(), HandlerError> {
        let mut seen = self.not_propagated.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match self.mapped(ctx.identity.as_ref(), kind, wap_id).await? {
            Some(id) => {
                seen.remove(&(label, wap_id.to_owned()));
                if let (Some(map), None) = (&ctx.identity, &ctx.billing_id) {
                    map.set(kind, wap_id, &id.to_string(), ACTOR)
                        .await
                        .map_err(|e| HandlerError::failed(format!("identity map: recording {wap_id} → {id}: {e}")))?;
                }
            }
            None => {
                tracing::warn!(kind = label, wap_id, "not propagated: no WHMCS product is mapped to this WAP {label}");
                seen.insert((label, wap_id.to_owned()));
            }
        }
        *self.not_propagated.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        Ok(())
    }

    /// The client with `email`, created when there is none.
    async fn ensure_client(&self, email: &str) -> Result<u64, HandlerError> {
        if let Some(c) = self.client.find_client_by_email(email).await.map_err(|e| failed("GetClients", e))? {
            return Ok(c.id);
        }
        match self.client.add_client(&NewClient::from_email(email)).await {
            Ok(id) => Ok(id),
            // Created meanwhile (or by an earlier attempt whose answer was lost): find it.
            Err(e) if e.kind() == ErrorKind::Duplicate => self
                .client
                .find_client_by_email(email)
                .await
                .map_err(|e| failed("GetClients", e))?
                .map(|c| c.id)
                .ok_or_else(|| failed("AddClient", e)),
            Err(e) => Err(failed("AddClient", e)),
        }
    }

    /// The live service of a subscription (the oldest, when an earlier bug made several).
    async fn find_service(
        &self,
        client_id: Option<u64>,
        subscription_id: &str,
    ) -> Result<Option<Service>, HandlerError> {
        let found = self
            .client
            .find_services_by_wap_subscription(client_id, self.config.subscription_key, subscription_id)
            .await
            .map_err(|e| failed("GetClientsProducts", e))?;
        if found.iter().filter(|s| !is_gone(&s.status)).count() > 1 {
            tracing::error!(subscription_id, "more than one live WHMCS service carries this WAP subscription id");
        }
        let live = found.iter().find(|s| !is_gone(&s.status)).cloned();
        Ok(live.or_else(|| found.into_iter().next()))
    }

    /// Accepts the order of a Pending item (an earlier attempt stopped between AddOrder and AcceptOrder).
    async fn accept_pending(&self, order_id: u64) -> Result<(), HandlerError> {
        match self.client.accept_order(order_id, self.config.autosetup).await {
            // Accepted meanwhile.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other.map_err(|e| failed("AcceptOrder", e)),
        }
    }

    async fn ensure_service(&self, ctx: &EventContext<'_>, s: &AdminSubscription) -> Result<Service, HandlerError> {
        let id = &s.subscription_id;
        let email = s.account_admin_live_email_id.as_deref().filter(|e| !e.trim().is_empty());
        let email =
            email.ok_or_else(|| HandlerError::failed(format!("subscription {id} has no AccountAdminLiveEmailId")))?;
        let client_id = self.ensure_client(email).await?;
        if let Some(service) = self.find_service(Some(client_id), id).await? {
            if service.status == "Pending" {
                self.accept_pending(service.orderid).await?;
            }
            return Ok(service);
        }
        let plan = s.plan_id.as_deref().unwrap_or_default();
        let pid = self.mapped(ctx.identity.as_ref(), IdentityKind::Plan, plan).await?.ok_or_else(|| {
            HandlerError::dependency_not_ready(format!("WAP plan {plan:?} is not mapped to a WHMCS product"))
        })?;
        let mut item = OrderItem::product(pid);
        item = match self.config.subscription_key {
            SubscriptionKey::Domain => item.domain(id.as_str()),
            SubscriptionKey::CustomField(field) => item.custom_field(field, id.as_str()),
        };
        if let Some(cycle) = &self.config.billing_cycle {
            item = item.billing_cycle(cycle.as_str());
        }
        // If this fails after WHMCS committed it, the next attempt finds the service above.
        let placed = self
            .client
            .add_order(&NewOrder::new(client_id, self.config.payment_method.as_str()).item(item))
            .await
            .map_err(|e| failed("AddOrder", e))?;
        self.accept_pending(placed.orderid).await?;
        let service = self
            .find_service(Some(client_id), id)
            .await?
            .ok_or_else(|| HandlerError::failed(format!("the service ordered for subscription {id} is not found")))?;
        if let Some(map) = &ctx.identity {
            map.set(IdentityKind::Subscription, id, &service.id.to_string(), ACTOR)
                .await
                .map_err(|e| HandlerError::failed(format!("identity map: recording {id}: {e}")))?;
        }
        Ok(service)
    }

    /// The service of an existing subscription, by its email when known, else across clients.
    async fn existing_service(&self, s: &AdminSubscription) -> Result<Option<Service>, HandlerError> {
        let client_id = match s.account_admin_live_email_id.as_deref().filter(|e| !e.trim().is_empty()) {
            Some(email) => match self.client.find_client_by_email(email).await.map_err(|e| failed("GetClients", e))? {
                Some(c) => Some(c.id),
                None => return Ok(None),
            },
            None => None,
        };
        self.find_service(client_id, &s.subscription_id).await
    }

    async fn apply_state(&self, service: &Service, state: Option<AdminSubscriptionState>) -> Result<(), HandlerError> {
        let current = self
            .client
            .get_clients_products(&crate::client::ServiceFilter::service(service.id))
            .await
            .map_err(|e| failed("GetClientsProducts", e))?
            .into_iter()
            .next()
            .map(|s| s.status)
            .unwrap_or_default();
        match state {
            Some(AdminSubscriptionState::Suspended) if current == "Active" => self
                .client
                .module_suspend(service.id, Some("Suspended in Windows Azure Pack"))
                .await
                .map_err(|e| failed("ModuleSuspend", e)),
            Some(AdminSubscriptionState::Active) if current == "Suspended" => {
                self.client.module_unsuspend(service.id).await.map_err(|e| failed("ModuleUnsuspend", e))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl EventHandler for WhmcsBilling {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        match change {
            // WHMCS products stay when a WAP plan is deleted: services may still reference them.
            EntityChange::Deleted(_) => Ok(()),
            _ => self.catalogue(ctx, IdentityKind::Plan, "plan", &change.entity().id).await,
        }
    }

    async fn addon(&self, ctx: &EventContext<'_>, change: EntityChange<'_, PlanAddon>) -> Result<(), HandlerError> {
        match change {
            EntityChange::Deleted(_) => Ok(()),
            _ => self.catalogue(ctx, IdentityKind::AddOn, "addon", &change.entity().id).await,
        }
    }

    async fn subscription(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, AdminSubscription>,
    ) -> Result<(), HandlerError> {
        match change {
            EntityChange::Created(s) | EntityChange::Updated(s) => {
                let service = self.ensure_service(ctx, s).await?;
                self.apply_state(&service, s.state).await
            }
            EntityChange::Patched(s) => {
                if s.state.is_none() {
                    return Ok(());
                }
                let service = self.existing_service(s).await?.ok_or_else(|| {
                    HandlerError::dependency_not_ready(format!(
                        "subscription {} is not in WHMCS yet",
                        s.subscription_id
                    ))
                })?;
                self.apply_state(&service, s.state).await
            }
            EntityChange::Deleted(s) => match self.existing_service(s).await? {
                Some(service) if !is_gone(&service.status) => {
                    // Add-ons first: a crash in between leaves the service live, and the retry finishes both.
                    let addons =
                        self.client.get_service_addons(service.id).await.map_err(|e| failed("GetClientsAddons", e))?;
                    for a in addons.into_iter().filter(|a| !is_gone(&a.status)) {
                        self.client
                            .set_addon_status(a.id, "Terminated")
                            .await
                            .map_err(|e| failed("UpdateClientAddon", e))?;
                    }
                    self.client.module_terminate(service.id).await.map_err(|e| failed("ModuleTerminate", e))
                }
                _ => Ok(()),
            },
        }
    }

    async fn subscription_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        let reference = change.entity();
        let subscription = ctx.entity_parent_id.ok_or_else(|| {
            HandlerError::failed("subscription add-on event without EntityParentId (the subscription)")
        })?;
        let service = match self.find_service(None, subscription).await? {
            Some(s) if !is_gone(&s.status) => s,
            // The subscription was deleted meanwhile (its feed is drained before this one): nothing left to bill.
            Some(s) => {
                tracing::info!(subscription, service = s.id, "add-on event for a terminated service; nothing to do");
                return Ok(());
            }
            None => {
                return match change {
                    EntityChange::Deleted(_) => Ok(()),
                    _ => Err(HandlerError::dependency_not_ready(format!(
                        "subscription {subscription} is not in WHMCS yet"
                    ))),
                };
            }
        };
        let addon_id =
            self.mapped(ctx.identity.as_ref(), IdentityKind::AddOn, &reference.add_on_id).await?.ok_or_else(|| {
                HandlerError::dependency_not_ready(format!(
                    "WAP add-on {:?} is not mapped to a WHMCS product add-on",
                    reference.add_on_id
                ))
            })?;
        let existing = self.client.get_service_addons(service.id).await.map_err(|e| failed("GetClientsAddons", e))?;
        let live = existing.into_iter().find(|a| a.addonid == addon_id && !is_gone(&a.status));
        match (change, live) {
            (EntityChange::Deleted(_), Some(a)) => {
                self.client.set_addon_status(a.id, "Cancelled").await.map_err(|e| failed("UpdateClientAddon", e))
            }
            (EntityChange::Deleted(_), None) => Ok(()),
            (_, Some(a)) if a.status == "Pending" => self.accept_pending(a.orderid).await,
            (_, Some(_)) => Ok(()),
            (_, None) => {
                let order = NewOrder::new(service.clientid, self.config.payment_method.as_str())
                    .addon_for_service(addon_id, service.id);
                let placed = self.client.add_order(&order).await.map_err(|e| failed("AddOrder", e))?;
                self.accept_pending(placed.orderid).await
            }
        }
    }
}
