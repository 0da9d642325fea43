//! [`HostBillBilling`]: the engine's [`EventHandler`] and [`UsageHandler`] for HostBill.
//!
//! * accounts → clients, looked up by email before `addClient`;
//! * plans and add-ons → the products and add-ons the administrator created, mapped in the configuration or the
//!   identity map, and reported as "not propagated" until mapped (HostBill has no documented call to create them);
//! * subscriptions → accounts through `addOrder`, the WAP subscription id written into the account's `domain`
//!   (`editAccountDetails`) and found again there; an untagged account of the same client and product (an earlier
//!   attempt stopped between `addOrder` and the tag) is adopted instead of ordering again;
//! * state changes → `accountSuspend` / `accountUnsuspend`, deletion → `accountTerminate`;
//! * subscription add-ons → `addAddonToAccount`, found again through `getAccountAddons`;
//! * usage → metered usage (`meteredAddUsage`, or `meteredAddUsageBulk`) through the engine's intent journal
//!   ([`Delivery::Journaled`]), each HostBill line carrying the marker `<intent token>#<line>/<lines>` in its
//!   `rawoutput`, reconciled after a crash through `meteredGetUsage` (which shows only the current billing period:
//!   an intent of an earlier period is in doubt).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Datelike, Utc};
use wap_billing_engine::journal::{Delivery, Intent, Reconciliation};
use wap_billing_engine::store::IdentityKind;
use wap_billing_engine::usage_lines::{UsageLines, UsagePeriod, UsageShape};
use wap_billing_engine::{
    EntityChange, EventContext, EventHandler, HandlerError, IdentityMap, UsageBatch, UsageHandler,
};
use wap_types::{AdminSubscription, AdminSubscriptionState, FeedKind, Plan, PlanAddon, PlanAddonReference};

use crate::client::HostBillClient;
use crate::error::Error;
use crate::types::{Account, NewClient, NewUsage};

/// The actor recorded in the identity map's audit log.
const ACTOR: &str = "wap-billing-hostbill";

/// How usage lines are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UsageCalls {
    /// One `meteredAddUsage` per line (every HostBill version).
    Single,
    /// `meteredAddUsageBulk`: one call per account and distinct variable set (where the version has it).
    #[default]
    Bulk,
}

/// What a removed subscription add-on does. HostBill documents no call that cancels an account's add-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AddonRemoval {
    /// Logged (warn) and listed in [`HostBillBilling::manual_actions`] for the administrator (the default).
    #[default]
    Report,
    /// Accepted silently.
    Ignore,
}

/// How WAP maps onto this HostBill installation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostBillBillingConfig {
    /// WAP plan id (lower case) → HostBill product id. The identity map, when configured, is asked first.
    pub plans: BTreeMap<String, u64>,
    /// WAP add-on id (lower case) → HostBill add-on id. The identity map, when configured, is asked first.
    pub addons: BTreeMap<String, u64>,
    /// The billing cycle of orders and add-ons (`m`, `q`, `s`, `a`, `b`, `t`, `d`, `w`, `h`, `Free`, `Once`).
    pub cycle: String,
    /// WAP meter (lower case) → HostBill metered variable; unlisted meters go to the variable of the meter's name
    /// in lower case.
    pub meters: BTreeMap<String, String>,
    /// Single or bulk usage calls.
    pub usage_calls: UsageCalls,
    /// What a removed subscription add-on does.
    pub addon_removal: AddonRemoval,
}

impl Default for HostBillBillingConfig {
    fn default() -> Self {
        HostBillBillingConfig {
            plans: BTreeMap::new(),
            addons: BTreeMap::new(),
            cycle: "m".into(),
            meters: BTreeMap::new(),
            usage_calls: UsageCalls::default(),
            addon_removal: AddonRemoval::default(),
        }
    }
}

impl HostBillBillingConfig {
    /// Monthly orders, bulk usage calls, no mappings yet.
    pub fn new() -> Self {
        HostBillBillingConfig::default()
    }

    /// Maps WAP plan `plan_id` to HostBill product `product_id`.
    pub fn plan(mut self, plan_id: &str, product_id: u64) -> Self {
        self.plans.insert(plan_id.to_ascii_lowercase(), product_id);
        self
    }

    /// Maps WAP add-on `addon_id` to HostBill add-on `id`.
    pub fn addon(mut self, addon_id: &str, id: u64) -> Self {
        self.addons.insert(addon_id.to_ascii_lowercase(), id);
        self
    }

    /// Sends WAP meter `meter` as HostBill metered variable `variable`.
    pub fn meter(mut self, meter: &str, variable: &str) -> Self {
        self.meters.insert(meter.to_ascii_lowercase(), variable.to_owned());
        self
    }

    /// The billing cycle of orders and add-ons.
    pub fn cycle(mut self, cycle: &str) -> Self {
        self.cycle = cycle.to_owned();
        self
    }

    /// Single or bulk usage calls.
    pub fn usage_calls(mut self, calls: UsageCalls) -> Self {
        self.usage_calls = calls;
        self
    }

    /// What a removed subscription add-on does.
    pub fn addon_removal(mut self, removal: AddonRemoval) -> Self {
        self.addon_removal = removal;
        self
    }

    /// The HostBill variable of a WAP meter.
    pub fn variable_of(&self, meter: &str) -> String {
        let lower = meter.to_ascii_lowercase();
        self.meters.get(&lower).cloned().unwrap_or(lower)
    }
}

/// A usage batch found partly applied by `reconcile`: its lines already in HostBill are skipped when the same
/// batch comes again.
#[derive(Debug, Clone)]
struct Partial {
    token: String,
    first: i64,
    last: i64,
    lines: usize,
    present: BTreeSet<usize>,
}

/// The HostBill billing system for the engine's event and usage processors.
#[derive(Debug)]
pub struct HostBillBilling {
    client: HostBillClient,
    config: HostBillBillingConfig,
    not_propagated: Mutex<BTreeSet<(&'static str, String)>>,
    manual: Mutex<Vec<String>>,
    /// WAP subscription id (lower case) → HostBill account id, as found or made (accounts are never deleted).
    accounts: Mutex<HashMap<String, u64>>,
    partial: Mutex<Option<Partial>>,
}

fn failed(what: &str, e: Error) -> HandlerError {
    let message = format!("{what}: {e}");
    HandlerError::Failed { message, record_event_id: None, source: Some(Box::new(e)) }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The marker of line `index` of `lines` in a usage call with intent token `token`.
pub(crate) fn marker(token: &str, index: usize, lines: usize) -> String {
    format!("{token}#{index}/{lines}")
}

/// `(index, lines)` of a marker of `token`.
fn parse_marker(token: &str, raw: &str) -> Option<(usize, usize)> {
    let rest = raw.trim().strip_prefix(token)?.strip_prefix('#')?;
    let (i, n) = rest.split_once('/')?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

impl HostBillBilling {
    /// The handler over `client` with `config`.
    pub fn new(client: HostBillClient, config: HostBillBillingConfig) -> Arc<Self> {
        Arc::new(HostBillBilling {
            client,
            config,
            not_propagated: Mutex::new(BTreeSet::new()),
            manual: Mutex::new(Vec::new()),
            accounts: Mutex::new(HashMap::new()),
            partial: Mutex::new(None),
        })
    }

    /// The client.
    pub fn client(&self) -> &HostBillClient {
        &self.client
    }

    /// The configuration.
    pub fn config(&self) -> &HostBillBillingConfig {
        &self.config
    }

    /// The WAP plans (`("plan", id)`) and add-ons (`("addon", id)`) seen but not mapped to HostBill: they are not
    /// propagated until the administrator maps them (in the configuration or the identity map).
    pub fn not_propagated(&self) -> Vec<(&'static str, String)> {
        lock(&self.not_propagated).iter().cloned().collect()
    }

    /// Changes HostBill's API cannot make, for the administrator to make by hand (e.g. a removed add-on).
    pub fn manual_actions(&self) -> Vec<String> {
        lock(&self.manual).clone()
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
                    HandlerError::failed(format!("identity map: {wap_id} is mapped to {id:?}, not a HostBill id"))
                })?;
                return Ok(Some(id));
            }
        }
        let table = if kind == IdentityKind::Plan { &self.config.plans } else { &self.config.addons };
        Ok(table.get(&wap_id.to_ascii_lowercase()).copied())
    }

    async fn catalogue(
        &self,
        ctx: &EventContext<'_>,
        kind: IdentityKind,
        label: &'static str,
        wap_id: &str,
    ) -> Result<(), HandlerError> {
        match self.mapped(ctx.identity.as_ref(), kind, wap_id).await? {
            Some(id) => {
                lock(&self.not_propagated).remove(&(label, wap_id.to_owned()));
                if let (Some(map), None) = (&ctx.identity, &ctx.billing_id) {
                    map.set(kind, wap_id, &id.to_string(), ACTOR)
                        .await
                        .map_err(|e| HandlerError::failed(format!("identity map: recording {wap_id} → {id}: {e}")))?;
                }
            }
            None => {
                tracing::warn!(
                    kind = label,
                    wap_id,
                    "not propagated: no HostBill {label} is mapped to this WAP {label}"
                );
                lock(&self.not_propagated).insert((label, wap_id.to_owned()));
            }
        }
        Ok(())
    }

    /// The client with `email` (the oldest when there are several), created when there is none.
    async fn ensure_client(&self, email: &str) -> Result<u64, HandlerError> {
        let found = self.client.find_clients_by_email(email).await.map_err(|e| failed("getClients", e))?;
        if let Some(id) = found.iter().map(|c| c.id).min() {
            if found.len() > 1 {
                tracing::error!(email, clients = found.len(), "more than one HostBill client has this email");
            }
            return Ok(id);
        }
        // If this fails after HostBill committed it, the next attempt finds the client above.
        self.client.add_client(&NewClient::from_email(email)).await.map_err(|e| failed("addClient", e))
    }

    fn remember(&self, subscription_id: &str, account: u64) {
        lock(&self.accounts).insert(subscription_id.to_ascii_lowercase(), account);
    }

    /// The account carrying `subscription_id` (the live one first), fresh from HostBill.
    async fn find_account(
        &self,
        client_id: Option<u64>,
        subscription_id: &str,
    ) -> Result<Option<Account>, HandlerError> {
        let cached = lock(&self.accounts).get(&subscription_id.to_ascii_lowercase()).copied();
        if let Some(id) = cached {
            let a = self.client.get_account_details(id).await.map_err(|e| failed("getAccountDetails", e))?;
            return Ok(Some(a));
        }
        let found = match client_id {
            Some(c) => {
                let all = self.client.get_client_accounts(c).await.map_err(|e| failed("getClientAccounts", e))?;
                all.into_iter().filter(|a| a.domain.trim().eq_ignore_ascii_case(subscription_id)).collect()
            }
            None => self.client.find_accounts_by_domain(subscription_id).await.map_err(|e| failed("getAccounts", e))?,
        };
        if found.iter().filter(|a| !a.is_gone()).count() > 1 {
            tracing::error!(subscription_id, "more than one live HostBill account carries this WAP subscription id");
        }
        let chosen = found.iter().find(|a| !a.is_gone()).cloned().or_else(|| found.into_iter().min_by_key(|a| a.id));
        if let Some(a) = &chosen {
            self.remember(subscription_id, a.id);
        }
        Ok(chosen)
    }

    /// An account of `client_id` for `product_id` that carries no subscription id yet (made by an `addOrder`
    /// whose attempt stopped before the tag).
    async fn untagged_account(
        &self,
        client_id: u64,
        product_id: u64,
        order_id: Option<u64>,
    ) -> Result<Option<Account>, HandlerError> {
        let all = self.client.get_client_accounts(client_id).await.map_err(|e| failed("getClientAccounts", e))?;
        let mut candidates = Vec::new();
        for a in all.into_iter().filter(|a| a.domain.trim().is_empty() && !a.is_gone()) {
            let a = if a.product_id.is_none() {
                self.client.get_account_details(a.id).await.map_err(|e| failed("getAccountDetails", e))?
            } else {
                a
            };
            if a.product_id == Some(product_id) {
                candidates.push(a);
            }
        }
        let by_order = order_id.and_then(|o| candidates.iter().find(|a| a.order_id == Some(o)).cloned());
        Ok(by_order.or_else(|| candidates.into_iter().min_by_key(|a| a.id)))
    }

    async fn tag(&self, account: &Account, subscription_id: &str) -> Result<(), HandlerError> {
        let mut fields = vec![("domain", subscription_id.to_owned())];
        if account.status.eq_ignore_ascii_case("pending") || account.status.is_empty() {
            // Billing state only: WAP provisions, HostBill's module is not asked to create anything.
            fields.push(("status", "Active".to_owned()));
        }
        self.client.edit_account_details(account.id, &fields).await.map_err(|e| failed("editAccountDetails", e))?;
        self.remember(subscription_id, account.id);
        Ok(())
    }

    async fn ensure_account(&self, ctx: &EventContext<'_>, s: &AdminSubscription) -> Result<Account, HandlerError> {
        let id = s.subscription_id.as_str();
        let email = s.account_admin_live_email_id.as_deref().filter(|e| !e.trim().is_empty());
        let email =
            email.ok_or_else(|| HandlerError::failed(format!("subscription {id} has no AccountAdminLiveEmailId")))?;
        let client_id = self.ensure_client(email).await?;
        if let Some(a) = self.find_account(Some(client_id), id).await? {
            if a.status.eq_ignore_ascii_case("pending") {
                self.tag(&a, id).await?;
                return self.client.get_account_details(a.id).await.map_err(|e| failed("getAccountDetails", e));
            }
            return Ok(a);
        }
        let plan = s.plan_id.as_deref().unwrap_or_default();
        let product = self.mapped(ctx.identity.as_ref(), IdentityKind::Plan, plan).await?.ok_or_else(|| {
            HandlerError::dependency_not_ready(format!("WAP plan {plan:?} is not mapped to a HostBill product"))
        })?;
        let account = match self.untagged_account(client_id, product, None).await? {
            Some(a) => {
                tracing::info!(
                    subscription = id,
                    account = a.id,
                    "adopting the untagged account of an earlier attempt"
                );
                a
            }
            None => {
                // If this fails after HostBill committed it, the next attempt adopts the untagged account above.
                let order = self
                    .client
                    .add_order(client_id, product, &self.config.cycle)
                    .await
                    .map_err(|e| failed("addOrder", e))?;
                self.untagged_account(client_id, product, Some(order)).await?.ok_or_else(|| {
                    HandlerError::failed(format!(
                        "the account ordered for subscription {id} (order {order}) is not found"
                    ))
                })?
            }
        };
        self.tag(&account, id).await?;
        if let Some(map) = &ctx.identity {
            map.set(IdentityKind::Subscription, id, &account.id.to_string(), ACTOR)
                .await
                .map_err(|e| HandlerError::failed(format!("identity map: recording {id}: {e}")))?;
        }
        self.client.get_account_details(account.id).await.map_err(|e| failed("getAccountDetails", e))
    }

    async fn apply_state(&self, account: &Account, state: Option<AdminSubscriptionState>) -> Result<(), HandlerError> {
        let status = account.status.to_ascii_lowercase();
        match state {
            Some(AdminSubscriptionState::Suspended) if status == "active" => {
                self.client.account_suspend(account.id).await.map_err(|e| failed("accountSuspend", e))
            }
            Some(AdminSubscriptionState::Active) if status == "suspended" => {
                self.client.account_unsuspend(account.id).await.map_err(|e| failed("accountUnsuspend", e))
            }
            _ => Ok(()),
        }
    }

    async fn existing_account(&self, s: &AdminSubscription) -> Result<Option<Account>, HandlerError> {
        let client_id = match s.account_admin_live_email_id.as_deref().filter(|e| !e.trim().is_empty()) {
            Some(email) => {
                let found = self.client.find_clients_by_email(email).await.map_err(|e| failed("getClients", e))?;
                match found.iter().map(|c| c.id).min() {
                    Some(c) => Some(c),
                    None => return Ok(None),
                }
            }
            None => None,
        };
        self.find_account(client_id, &s.subscription_id).await
    }

    // ---- usage -----------------------------------------------------------------------------------------------

    async fn send_usage(&self, lines: &UsageLines<'_>) -> Result<(), HandlerError> {
        let (first, last) = (lines.first_event_id(), lines.last_event_id());
        let token = Intent::default_token(FeedKind::Usage, first, last);
        let n = lines.lines.len();
        let skip: BTreeSet<usize> = match lock(&self.partial).as_ref() {
            Some(p) if p.token == token && p.lines == n => p.present.clone(),
            Some(p) if p.first <= last && first <= p.last => {
                return Err(HandlerError::failed(format!(
                    "usage {first}..={last} overlaps the partly applied batch {} ({} of {} lines in HostBill) but \
                     has other boundaries: resolve the in-doubt intent by hand",
                    p.token,
                    p.present.len(),
                    p.lines
                )));
            }
            _ => BTreeSet::new(),
        };
        // Every account first: nothing is sent while a subscription is missing.
        let mut account_of: BTreeMap<String, u64> = BTreeMap::new();
        for l in lines.lines {
            if account_of.contains_key(&l.subscription_id) {
                continue;
            }
            // Usage goes to the account whatever its status: the cached id needs no fresh read.
            let cached = lock(&self.accounts).get(&l.subscription_id.to_ascii_lowercase()).copied();
            let id = match cached {
                Some(id) => id,
                None => {
                    self.find_account(None, &l.subscription_id)
                        .await?
                        .ok_or_else(|| {
                            HandlerError::dependency_not_ready(format!(
                                "subscription {} is not in HostBill yet",
                                l.subscription_id
                            ))
                        })?
                        .id
                }
            };
            account_of.insert(l.subscription_id.clone(), id);
        }
        let mut per_account: BTreeMap<u64, Vec<NewUsage>> = BTreeMap::new();
        for (i, l) in lines.lines.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let usage = NewUsage::new(self.config.variable_of(&l.meter), l.quantity)
                .output(format!(
                    "WAP {} {}/{} {} {}: EventId {}..={} ({} records)",
                    l.subscription_id,
                    l.provider,
                    l.resource_id,
                    l.meter,
                    l.period,
                    l.first_event_id,
                    l.last_event_id,
                    l.records
                ))
                .rawoutput(marker(&token, i, n));
            per_account.entry(account_of[&l.subscription_id]).or_default().push(usage);
        }
        for (account, usage) in per_account {
            match self.config.usage_calls {
                UsageCalls::Single => {
                    for u in &usage {
                        self.client.metered_add_usage(account, u).await.map_err(|e| failed("meteredAddUsage", e))?;
                    }
                }
                UsageCalls::Bulk => {
                    // A bulk call takes each variable once: split where a variable repeats.
                    let mut chunks: Vec<Vec<NewUsage>> = Vec::new();
                    for u in usage {
                        match chunks.iter_mut().find(|c| c.iter().all(|x| x.variable != u.variable)) {
                            Some(c) => c.push(u),
                            None => chunks.push(vec![u]),
                        }
                    }
                    for c in &chunks {
                        self.client
                            .metered_add_usage_bulk(account, c)
                            .await
                            .map_err(|e| failed("meteredAddUsageBulk", e))?;
                    }
                }
            }
        }
        let mut partial = lock(&self.partial);
        if partial.as_ref().is_some_and(|p| p.token == token) {
            *partial = None;
        }
        Ok(())
    }

    async fn reconcile_usage(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        let now = Utc::now();
        let opened = intent.opened_at;
        if (opened.year(), opened.month()) != (now.year(), now.month()) {
            return Ok(Reconciliation::unknown(format!(
                "{intent} was opened in an earlier billing period; meteredGetUsage shows only the current one"
            )));
        }
        let accounts = self.client.get_accounts().await.map_err(|e| failed("getAccounts", e))?;
        let mut present: BTreeSet<usize> = BTreeSet::new();
        let mut lines = None;
        for a in accounts.iter().filter(|a| !a.domain.trim().is_empty()) {
            let values = self.client.metered_get_usage(a.id).await.map_err(|e| failed("meteredGetUsage", e))?;
            for v in values {
                if let Some((i, n)) = parse_marker(&intent.token, &v.rawoutput) {
                    if !present.insert(i) {
                        return Ok(Reconciliation::unknown(format!(
                            "line {i} of {} is in HostBill more than once",
                            intent.token
                        )));
                    }
                    if *lines.get_or_insert(n) != n {
                        return Ok(Reconciliation::unknown(format!(
                            "{}: markers disagree on the line count",
                            intent.token
                        )));
                    }
                }
            }
        }
        Ok(match lines {
            None => {
                let mut partial = lock(&self.partial);
                if partial.as_ref().is_some_and(|p| p.token == intent.token) {
                    *partial = None;
                }
                Reconciliation::NotApplied
            }
            Some(n) if present.len() == n => Reconciliation::Applied,
            Some(n) => {
                tracing::warn!(token = %intent.token, present = present.len(), lines = n, "usage call partly applied; the missing lines are sent again");
                *lock(&self.partial) = Some(Partial {
                    token: intent.token.clone(),
                    first: intent.first_event_id,
                    last: intent.last_event_id,
                    lines: n,
                    present,
                });
                Reconciliation::NotApplied
            }
        })
    }
}

#[async_trait]
impl EventHandler for HostBillBilling {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        match change {
            // HostBill products stay when a WAP plan is deleted: accounts may still reference them.
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
                let account = self.ensure_account(ctx, s).await?;
                self.apply_state(&account, s.state).await
            }
            EntityChange::Patched(s) => {
                if s.state.is_none() {
                    return Ok(());
                }
                let account = self.existing_account(s).await?.ok_or_else(|| {
                    HandlerError::dependency_not_ready(format!(
                        "subscription {} is not in HostBill yet",
                        s.subscription_id
                    ))
                })?;
                self.apply_state(&account, s.state).await
            }
            EntityChange::Deleted(s) => match self.existing_account(s).await? {
                Some(a) if !a.is_gone() => {
                    self.client.account_terminate(a.id).await.map_err(|e| failed("accountTerminate", e))
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
        let account = match self.find_account(None, subscription).await? {
            Some(a) if !a.is_gone() => a,
            Some(a) => {
                tracing::info!(subscription, account = a.id, "add-on event for a terminated account; nothing to do");
                return Ok(());
            }
            None => {
                return match change {
                    EntityChange::Deleted(_) => Ok(()),
                    _ => Err(HandlerError::dependency_not_ready(format!(
                        "subscription {subscription} is not in HostBill yet"
                    ))),
                };
            }
        };
        let addon_id =
            self.mapped(ctx.identity.as_ref(), IdentityKind::AddOn, &reference.add_on_id).await?.ok_or_else(|| {
                HandlerError::dependency_not_ready(format!(
                    "WAP add-on {:?} is not mapped to a HostBill add-on",
                    reference.add_on_id
                ))
            })?;
        let existing = self.client.get_account_addons(account.id).await.map_err(|e| failed("getAccountAddons", e))?;
        let live = existing.into_iter().find(|a| a.addon_id == addon_id && !a.is_gone());
        match (change, live) {
            (EntityChange::Deleted(_), Some(a)) => {
                if self.config.addon_removal == AddonRemoval::Report {
                    let action = format!(
                        "cancel add-on {} (add-on {addon_id}) of account {} by hand: WAP subscription {subscription} \
                         removed add-on {}",
                        a.id, account.id, reference.add_on_id
                    );
                    tracing::warn!(action, "HostBill's API has no call to cancel an account's add-on");
                    lock(&self.manual).push(action);
                }
                Ok(())
            }
            (EntityChange::Deleted(_), None) | (_, Some(_)) => Ok(()),
            (_, None) => {
                // If this fails after HostBill committed it, the next attempt finds the add-on above.
                self.client
                    .add_addon_to_account(account.id, addon_id, Some(&self.config.cycle))
                    .await
                    .map_err(|e| failed("addAddonToAccount", e))
            }
        }
    }
}

#[async_trait]
impl UsageHandler for HostBillBilling {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        Err(HandlerError::failed(format!(
            "HostBill takes usage as metered lines (UsageShape::PerMeter), not {} records",
            batch.records.len()
        )))
    }

    fn delivery(&self) -> Delivery {
        Delivery::Journaled
    }

    fn usage_shape(&self) -> UsageShape {
        UsageShape::PerMeter { period: UsagePeriod::Month }
    }

    async fn apply_usage_lines(&self, lines: UsageLines<'_>) -> Result<(), HandlerError> {
        self.send_usage(&lines).await
    }

    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        if intent.feed != FeedKind::Usage {
            return Ok(Reconciliation::unknown(format!("HostBill usage handler cannot reconcile {intent}")));
        }
        self.reconcile_usage(intent).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_do_not_match_other_tokens() {
        let m = marker("wap-usage-1-10", 3, 7);
        assert_eq!(parse_marker("wap-usage-1-10", &m), Some((3, 7)));
        assert_eq!(parse_marker("wap-usage-1-1", &m), None, "a token that is a prefix of another");
        assert_eq!(parse_marker("wap-usage-1-10", "something else"), None);
        let c = HostBillBillingConfig::new().meter("CPUAllocationCount", "cpu");
        assert_eq!((c.variable_of("cpuallocationcount").as_str(), c.variable_of("DiskGB").as_str()), ("cpu", "diskgb"));
    }
}
