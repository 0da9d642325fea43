//! WAP's administrator side for plans and add-ons: create (private), configure, rename, make public or private,
//! decommission, clone, delete, link and unlink add-ons. Each operation commits exactly the feed events WAP's
//! Admin API produces for it, in the order the generated catalogue uses:
//!
//! | Operation | Events |
//! |---|---|
//! | create a plan | `plans` Post (`State` 0 Private, `ConfigState` 0), one `planServices` Post per service, one `planAddons` Post per linked add-on |
//! | configure, rename, make public / private, decommission | `plans` (or `addons`) Patch carrying `Id` and the changed members only |
//! | clone | as create, for a new `Id`, with the original's services, quotas, add-on links and configuration; Private |
//! | delete | `planAddons` Delete per link, `planServices` Delete per service, then `plans` Delete (refused while subscriptions use the plan) |
//! | link / unlink an add-on | `planAddons` Post / Delete with `EntityParentId` = the plan |
//! | create / clone / delete an add-on | `addons` Post / Post / Delete (delete refused while a subscription holds it; its links are deleted first) |
//!
//! Tenants can buy only Public plans and add-ons ([`crate::WapSim::create_subscription`],
//! [`crate::WapSim::add_subscription_addon`]).

use serde_json::{json, Value};
use wap_types::{
    ConfigState, EventMethod, FeedKind, Plan, PlanAddon, PlanAddonReference, PlanAdvertisement, PlanState,
    ResourceProviderReference, ServiceQuota, SyncState,
};

use crate::ids::id_suffix;
use crate::sim::Inner;
use crate::time::feed_now;

/// An administrator operation that WAP would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No plan or add-on with that id.
    #[error("unknown {what} {id:?}")]
    Unknown {
        /// `plan` or `add-on`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The operation is not allowed in the current state (e.g. deleting a plan that has subscriptions).
    #[error("{0}")]
    Refused(String),
}

/// A plan as an administrator creates it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewPlan {
    /// Display name (unique in WAP).
    pub name: String,
    /// Services offered, by resource provider name (`sqlservers`, `mysqlservers`, `webspaces`, `systemcenter`).
    pub services: Vec<String>,
    /// Add-ons linked at creation.
    pub add_ons: Vec<String>,
    /// `MaxSubscriptionsPerAccount` (-1 unlimited; WAP's default 1).
    pub max_subscriptions_per_account: Option<i64>,
}

impl NewPlan {
    /// A plan named `name` offering `services`.
    pub fn new(name: impl Into<String>, services: &[&str]) -> Self {
        NewPlan {
            name: name.into(),
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            add_ons: Vec::new(),
            max_subscriptions_per_account: Some(1),
        }
    }

    /// Links `add_on` at creation.
    pub fn with_add_on(mut self, add_on: impl Into<String>) -> Self {
        self.add_ons.push(add_on.into());
        self
    }
}

/// An add-on as an administrator creates it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewAddOn {
    /// Display name.
    pub name: String,
    /// The service whose quota it raises.
    pub service: String,
}

impl NewAddOn {
    /// An add-on named `name` for `service`.
    pub fn new(name: impl Into<String>, service: impl Into<String>) -> Self {
        NewAddOn { name: name.into(), service: service.into() }
    }
}

fn id_for(name: &str, rng: &mut fastrand::Rng) -> String {
    let stem: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).take(24).collect();
    format!("{}{}", if stem.is_empty() { "Plan" } else { &stem }, id_suffix(rng))
}

fn quota_for(service: &str) -> ServiceQuota {
    ServiceQuota {
        service_name: service.to_owned(),
        service_instance_id: None,
        service_display_name: Some(service.to_owned()),
        service_instance_display_name: None,
        config_state: Some(ConfigState::NotConfigured),
        quota_sync_state: Some(SyncState::InSync),
        settings: Some(Vec::new()),
        extra: Default::default(),
    }
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn subscriptions_using_plan(inner: &Inner, plan_key: &str) -> usize {
    let data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    data.feeds
        .catalogue
        .subscriptions
        .values()
        .filter(|s| s.get("PlanId").and_then(Value::as_str).map(lower).as_deref() == Some(plan_key))
        .count()
}

fn plan_entity(inner: &Inner, id: &str) -> Result<Value, AdminError> {
    let data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    data.feeds.catalogue.plans.get(&lower(id)).cloned().ok_or(AdminError::Unknown { what: "plan", id: id.to_owned() })
}

fn add_on_entity(inner: &Inner, id: &str) -> Result<Value, AdminError> {
    let data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    data.feeds
        .catalogue
        .add_ons
        .get(&lower(id))
        .cloned()
        .ok_or(AdminError::Unknown { what: "add-on", id: id.to_owned() })
}

fn wire_id(entity: &Value, fallback: &str) -> String {
    entity.get("Id").and_then(Value::as_str).unwrap_or(fallback).to_owned()
}

pub(crate) fn create_plan(inner: &Inner, p: NewPlan) -> Result<Plan, AdminError> {
    if p.name.trim().is_empty() {
        return Err(AdminError::Refused("a plan needs a display name".into()));
    }
    let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    let name_taken = data
        .feeds
        .catalogue
        .plans
        .values()
        .any(|v| v.get("DisplayName").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(&p.name)));
    if name_taken {
        return Err(AdminError::Refused(format!("a plan named {:?} exists (display names are unique)", p.name)));
    }
    for a in &p.add_ons {
        if !data.feeds.catalogue.add_ons.contains_key(&lower(a)) {
            return Err(AdminError::Unknown { what: "add-on", id: a.clone() });
        }
    }
    let id = id_for(&p.name, &mut data.rng);
    let plan = Plan {
        id: id.clone(),
        display_name: Some(p.name.clone()),
        state: Some(PlanState::Private),
        config_state: Some(ConfigState::NotConfigured),
        quota_sync_state: Some(SyncState::InSync),
        last_error_message: None,
        advertisements: Some(vec![PlanAdvertisement {
            language_code: "en-us".into(),
            display_name: Some(p.name.clone()),
            description: None,
            extra: Default::default(),
        }]),
        service_quotas: Some(p.services.iter().map(|s| quota_for(s)).collect()),
        subscription_count: Some(0),
        max_subscriptions_per_account: p.max_subscriptions_per_account,
        add_on_references: Some(Vec::new()),
        add_ons: Some(Vec::new()),
        invitation_code: None,
        price: None,
        extra: Default::default(),
    };
    commit_plan_with_links(&mut data.feeds, &plan, &p.services, &p.add_ons);
    Ok(plan)
}

fn commit_plan_with_links(feeds: &mut crate::events::Feeds, plan: &Plan, services: &[String], add_ons: &[String]) {
    feeds.commit(FeedKind::Plans, EventMethod::Post, plan, None, feed_now());
    for s in services {
        let link = ResourceProviderReference {
            name: s.clone(),
            instance_id: None,
            config_state: Some(ConfigState::NotConfigured),
            extra: Default::default(),
        };
        feeds.commit(FeedKind::PlanServices, EventMethod::Post, &link, Some(&plan.id), feed_now());
    }
    for a in add_ons {
        let link = PlanAddonReference { add_on_id: a.clone(), ..Default::default() };
        feeds.commit(FeedKind::PlanAddons, EventMethod::Post, &link, Some(&plan.id), feed_now());
    }
}

/// Commits a Patch of `feed` carrying `Id` and `changes`.
fn patch(inner: &Inner, feed: FeedKind, id: &str, changes: Value) {
    let mut entity = json!({ "Id": id });
    if let (Some(e), Some(c)) = (entity.as_object_mut(), changes.as_object()) {
        for (k, v) in c {
            e.insert(k.clone(), v.clone());
        }
    }
    let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    data.feeds.commit(feed, EventMethod::Patch, &entity, None, feed_now());
}

pub(crate) fn change_plan(inner: &Inner, id: &str, changes: Value) -> Result<(), AdminError> {
    let current = plan_entity(inner, id)?;
    patch(inner, FeedKind::Plans, &wire_id(&current, id), changes);
    Ok(())
}

pub(crate) fn change_add_on(inner: &Inner, id: &str, changes: Value) -> Result<(), AdminError> {
    let current = add_on_entity(inner, id)?;
    patch(inner, FeedKind::Addons, &wire_id(&current, id), changes);
    Ok(())
}

pub(crate) fn clone_plan(inner: &Inner, id: &str, name: Option<&str>) -> Result<Plan, AdminError> {
    let original = plan_entity(inner, id)?;
    let mut plan: Plan = serde_json::from_value(original.clone())
        .map_err(|e| AdminError::Refused(format!("plan {id} cannot be read: {e}")))?;
    let original_name = plan.display_name.clone().unwrap_or_else(|| plan.id.clone());
    let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    let new_name = match name {
        Some(n) => n.to_owned(),
        None => {
            let mut n = format!("{original_name} (clone)");
            let mut k = 2;
            while data
                .feeds
                .catalogue
                .plans
                .values()
                .any(|v| v.get("DisplayName").and_then(Value::as_str).is_some_and(|d| d.eq_ignore_ascii_case(&n)))
            {
                n = format!("{original_name} (clone {k})");
                k += 1;
            }
            n
        }
    };
    let key = lower(&plan.id);
    let services: Vec<String> =
        data.feeds.catalogue.plan_services.iter().filter(|(p, _)| *p == key).map(|(_, s)| s.clone()).collect();
    let add_ons: Vec<String> = data
        .feeds
        .catalogue
        .plan_add_ons
        .iter()
        .filter(|(p, _)| *p == key)
        .filter_map(|(_, a)| data.feeds.catalogue.add_ons.get(a).map(|v| wire_id(v, a)))
        .collect();
    plan.id = id_for(&new_name, &mut data.rng);
    plan.display_name = Some(new_name.clone());
    plan.state = Some(PlanState::Private);
    plan.subscription_count = Some(0);
    plan.add_on_references = Some(Vec::new());
    plan.add_ons = Some(Vec::new());
    if let Some(ads) = plan.advertisements.as_mut() {
        for a in ads.iter_mut().filter(|a| a.display_name.as_deref() == Some(original_name.as_str())) {
            a.display_name = Some(new_name.clone());
        }
    }
    commit_plan_with_links(&mut data.feeds, &plan, &services, &add_ons);
    Ok(plan)
}

pub(crate) fn delete_plan(inner: &Inner, id: &str) -> Result<(), AdminError> {
    let current = plan_entity(inner, id)?;
    let key = lower(id);
    let n = subscriptions_using_plan(inner, &key);
    if n > 0 {
        return Err(AdminError::Refused(format!("plan {id} has {n} subscription(s): WAP deletes only unused plans")));
    }
    let wire = wire_id(&current, id);
    let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    let links: Vec<String> = data
        .feeds
        .catalogue
        .plan_add_ons
        .iter()
        .filter(|(p, _)| *p == key)
        .filter_map(|(_, a)| data.feeds.catalogue.add_ons.get(a).map(|v| wire_id(v, a)))
        .collect();
    let services: Vec<String> =
        data.feeds.catalogue.plan_services.iter().filter(|(p, _)| *p == key).map(|(_, s)| s.clone()).collect();
    for a in links {
        let link = PlanAddonReference { add_on_id: a, ..Default::default() };
        data.feeds.commit(FeedKind::PlanAddons, EventMethod::Delete, &link, Some(&wire), feed_now());
    }
    for s in services {
        let link =
            ResourceProviderReference { name: s, instance_id: None, config_state: None, extra: Default::default() };
        data.feeds.commit(FeedKind::PlanServices, EventMethod::Delete, &link, Some(&wire), feed_now());
    }
    data.feeds.commit(FeedKind::Plans, EventMethod::Delete, &current, None, feed_now());
    Ok(())
}

pub(crate) fn link_add_on(inner: &Inner, plan_id: &str, add_on_id: &str, link: bool) -> Result<(), AdminError> {
    let plan = plan_entity(inner, plan_id)?;
    let add_on = add_on_entity(inner, add_on_id)?;
    let (plan_wire, add_on_wire) = (wire_id(&plan, plan_id), wire_id(&add_on, add_on_id));
    let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    let exists = data.feeds.catalogue.plan_add_ons.contains(&(lower(plan_id), lower(add_on_id)));
    if exists == link {
        return Err(AdminError::Refused(format!(
            "add-on {add_on_id} is {} plan {plan_id}",
            if link { "already linked to" } else { "not linked to" }
        )));
    }
    let entity = PlanAddonReference { add_on_id: add_on_wire, ..Default::default() };
    let method = if link { EventMethod::Post } else { EventMethod::Delete };
    data.feeds.commit(FeedKind::PlanAddons, method, &entity, Some(&plan_wire), feed_now());
    Ok(())
}

pub(crate) fn create_add_on(inner: &Inner, a: NewAddOn) -> Result<PlanAddon, AdminError> {
    if a.name.trim().is_empty() {
        return Err(AdminError::Refused("an add-on needs a display name".into()));
    }
    let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    let id = id_for(&a.name, &mut data.rng);
    let add_on = PlanAddon {
        id: id.clone(),
        display_name: Some(a.name.clone()),
        state: Some(PlanState::Private),
        config_state: Some(ConfigState::NotConfigured),
        quota_sync_state: Some(SyncState::InSync),
        last_error_message: None,
        advertisements: Some(vec![PlanAdvertisement {
            language_code: "en-us".into(),
            display_name: Some(a.name.clone()),
            description: None,
            extra: Default::default(),
        }]),
        service_quotas: Some(vec![quota_for(&a.service)]),
        subscription_count: Some(0),
        associated_plans: None,
        max_occurrences_per_plan: Some(1),
        price: None,
        extra: Default::default(),
    };
    data.feeds.commit(FeedKind::Addons, EventMethod::Post, &add_on, None, feed_now());
    Ok(add_on)
}

pub(crate) fn clone_add_on(inner: &Inner, id: &str, name: Option<&str>) -> Result<PlanAddon, AdminError> {
    let original = add_on_entity(inner, id)?;
    let mut add_on: PlanAddon = serde_json::from_value(original)
        .map_err(|e| AdminError::Refused(format!("add-on {id} cannot be read: {e}")))?;
    let original_name = add_on.display_name.clone().unwrap_or_else(|| add_on.id.clone());
    let new_name = name.map(str::to_owned).unwrap_or_else(|| format!("{original_name} (clone)"));
    let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    add_on.id = id_for(&new_name, &mut data.rng);
    add_on.display_name = Some(new_name);
    add_on.state = Some(PlanState::Private);
    add_on.subscription_count = Some(0);
    add_on.associated_plans = None;
    data.feeds.commit(FeedKind::Addons, EventMethod::Post, &add_on, None, feed_now());
    Ok(add_on)
}

pub(crate) fn delete_add_on(inner: &Inner, id: &str) -> Result<(), AdminError> {
    let current = add_on_entity(inner, id)?;
    let key = lower(id);
    let wire = wire_id(&current, id);
    let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    let held = data.feeds.catalogue.subscriptions.values().any(|s| {
        s.get("AddOnReferences").and_then(Value::as_array).is_some_and(|refs| {
            refs.iter().any(|r| r.get("AddOnId").and_then(Value::as_str).map(lower).as_deref() == Some(&key))
        })
    });
    if held {
        return Err(AdminError::Refused(format!(
            "add-on {id} is held by a subscription: WAP deletes only unused add-ons"
        )));
    }
    let plans: Vec<String> = data
        .feeds
        .catalogue
        .plan_add_ons
        .iter()
        .filter(|(_, a)| *a == key)
        .filter_map(|(p, _)| data.feeds.catalogue.plans.get(p).map(|v| wire_id(v, p)))
        .collect();
    for p in plans {
        let link = PlanAddonReference { add_on_id: wire.clone(), ..Default::default() };
        data.feeds.commit(FeedKind::PlanAddons, EventMethod::Delete, &link, Some(&p), feed_now());
    }
    data.feeds.commit(FeedKind::Addons, EventMethod::Delete, &current, None, feed_now());
    Ok(())
}

/// Whether a tenant may buy the plan: it exists and is Public.
pub(crate) fn plan_for_sale(plan: &Value) -> Result<(), String> {
    match plan.get("State").and_then(Value::as_i64) {
        Some(1) => Ok(()),
        Some(2) => Err("is decommissioned".into()),
        _ => Err("is not public".into()),
    }
}
