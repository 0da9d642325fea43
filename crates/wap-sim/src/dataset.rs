//! [`DatasetSpec`] and the seeded generator of a realistic cloud: plans with service quotas, add-ons, plan links,
//! accounts, subscriptions (some suspended, some deleted), subscription add-ons, Patch events, and the subjects
//! that usage records are generated for.

use std::time::Duration;

use chrono::{DateTime, Duration as TimeDelta, DurationRound, Utc};
use serde_json::{json, Value};
use wap_types::{
    AdminSubscription, AdminSubscriptionState, ConfigState, EventMethod, FeedKind, Plan, PlanAddon, PlanAddonReference,
    PlanAdvertisement, PlanState, ResourceProviderReference, ServiceQuota, ServiceQuotaSetting, SubscriptionService,
    SyncState,
};

use crate::events::Feeds;
use crate::ids::{guid_from, id_suffix};
use crate::time::wap_time;
use crate::usage::{Provider, UsageSubject};

/// What the seeded generator builds. Every count may be 0.
///
/// Usage record `i` is a pure function of the seed and `i`, so `usage_records` can be in the millions: the store
/// keeps id ranges, not records.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    /// Plans in the catalogue (each gets services, quotas and add-on links).
    pub plans: usize,
    /// Add-ons in the catalogue.
    pub add_ons: usize,
    /// Tenant accounts (e-mail addresses) that own subscriptions.
    pub accounts: usize,
    /// Subscriptions created (some later suspended or deleted).
    pub subscriptions: usize,
    /// Percentage of subscriptions suspended after creation (`PUT` with admin `State` 2).
    pub suspended_percent: u8,
    /// Percentage of subscriptions deleted (`DELETE` events; their add-ons are removed first).
    pub deleted_percent: u8,
    /// Usage records generated at start.
    pub usage_records: u64,
    /// `StartTime` of the first usage record; `None` = the span ends at the current hour.
    pub usage_start: Option<DateTime<Utc>>,
    /// Time covered by the generated usage records (the step between ids is `span / usage_records`, at least
    /// one second).
    pub usage_span: Duration,
    /// Per mille of usage ids skipped, so that `/usage` has id gaps like WAP's sequence (default 20 = 2 %).
    pub usage_gap_per_mille: u16,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        DatasetSpec::small()
    }
}

impl DatasetSpec {
    /// A few of everything and about 1,000 usage records over 30 days.
    pub fn small() -> Self {
        DatasetSpec {
            plans: 4,
            add_ons: 3,
            accounts: 8,
            subscriptions: 16,
            suspended_percent: 20,
            deleted_percent: 15,
            usage_records: 1_000,
            usage_start: None,
            usage_span: Duration::from_secs(30 * 86_400),
            usage_gap_per_mille: 20,
        }
    }

    /// Nothing at all: no catalogue, no usage.
    pub fn empty() -> Self {
        DatasetSpec { plans: 0, add_ons: 0, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() }
    }

    /// [`DatasetSpec::small`] with `n` usage records.
    pub fn with_usage_records(n: u64) -> Self {
        DatasetSpec { usage_records: n, ..DatasetSpec::small() }
    }

    /// Sets the number of usage records.
    pub fn usage_records(mut self, n: u64) -> Self {
        self.usage_records = n;
        self
    }

    /// Fixes the `StartTime` of the first usage record (fully reproducible output).
    pub fn start_at(mut self, t: DateTime<Utc>) -> Self {
        self.usage_start = Some(t);
        self
    }

    /// Sets the per-mille rate of skipped usage ids (0 = no gaps).
    pub fn usage_gaps_per_mille(mut self, per_mille: u16) -> Self {
        self.usage_gap_per_mille = per_mille.min(900);
        self
    }

    /// The first usage `StartTime` for this spec, given the current time.
    pub(crate) fn resolved_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.usage_start.unwrap_or_else(|| {
            // The span actually covered: the step is at least one second, so huge counts cover more.
            let covered = self.step_secs().saturating_mul(self.usage_records.min(i64::MAX as u64) as i64);
            let span =
                TimeDelta::from_std(self.usage_span).unwrap_or(TimeDelta::days(30)).max(TimeDelta::seconds(covered));
            (now - span).duration_trunc(TimeDelta::hours(1)).unwrap_or(now - span)
        })
    }

    /// Seconds between consecutive usage ids.
    pub(crate) fn step_secs(&self) -> i64 {
        if self.usage_records == 0 {
            return 60;
        }
        ((self.usage_span.as_secs() / self.usage_records.max(1)) as i64).max(1)
    }
}

const PLAN_NAMES: [&str; 8] = [
    "Silver Hosting",
    "Bronze Starter",
    "Gold Business",
    "Platinum Enterprise",
    "Developer Sandbox",
    "Education",
    "Partner Reseller",
    "Trial",
];
const ADDON_NAMES: [&str; 6] =
    ["Extra Database", "Web Boost", "Extra Storage", "Backup Vault", "Premium Support", "Extra Cores"];
const FIRST: [&str; 10] = ["ana", "kenji", "lena", "omar", "priya", "lucas", "mei", "tomas", "sara", "diego"];
const LAST: [&str; 8] = ["ribeiro", "mori", "vogel", "haddad", "nair", "martin", "chen", "novak"];
const DOMAINS: [&str; 5] = ["fabrikam.test", "tailspin.test", "northwind.test", "contoso.test", "litware.test"];
const WORDS: [&str; 8] = ["brightline", "bluefin", "harbor", "cedar", "quartz", "summit", "meadow", "ember"];

/// A moving clock for generated events: each call advances it by a random number of seconds and milliseconds.
struct Timeline {
    now: DateTime<Utc>,
}

impl Timeline {
    fn tick(&mut self, rng: &mut fastrand::Rng) -> wap_types::WapDateTime {
        self.now += TimeDelta::milliseconds(rng.i64(5_000..900_000));
        wap_time(self.now, 3)
    }
}

/// The services and quota of a provider in a plan.
fn quota(provider: Provider, instance_ids: &[(Provider, String)], rng: &mut fastrand::Rng) -> ServiceQuota {
    let settings = match provider {
        Provider::Sql | Provider::MySql => vec![
            ServiceQuotaSetting::new("DatabaseCount", rng.u32(1..6).to_string()),
            ServiceQuotaSetting::new("MaxDatabaseSizeMB", (1024 * rng.u32(1..11)).to_string()),
        ],
        Provider::Web => Vec::new(),
        Provider::Vm => vec![ServiceQuotaSetting::new(
            "Actions",
            json!({"CpuCount": rng.u32(2..17), "MemoryMB": 2048 * rng.u32(1..9), "Templates": ["Windows 2012 R2"]})
                .to_string(),
        )],
    };
    ServiceQuota {
        service_name: provider.name().into(),
        service_instance_id: instance_ids.iter().find(|(p, _)| *p == provider).map(|(_, id)| id.clone()),
        service_display_name: Some(provider.display_name().into()),
        service_instance_display_name: None,
        config_state: Some(ConfigState::Configured),
        quota_sync_state: Some(SyncState::InSync),
        settings: Some(settings),
        extra: Default::default(),
    }
}

/// A generated subscription: id, index of its plan, bought add-ons (add-on id, instance id).
type GeneratedSubscription = (String, usize, Vec<(String, String)>);

/// What the catalogue generator hands to the usage generator.
#[derive(Debug)]
pub(crate) struct GeneratedCatalogue {
    pub(crate) subjects: Vec<UsageSubject>,
}

/// Generates the catalogue events into `feeds`, ending before `usage_start`.
pub(crate) fn generate_catalogue(
    spec: &DatasetSpec,
    seed: u64,
    usage_start: DateTime<Utc>,
    feeds: &mut Feeds,
) -> GeneratedCatalogue {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut clock = Timeline { now: usage_start - TimeDelta::days(10) };
    let instance_ids: Vec<(Provider, String)> =
        Provider::ALL.iter().map(|p| (*p, guid_from(&mut rng).to_ascii_uppercase())).collect();

    // Add-ons first (plans link to them).
    let mut add_on_ids = Vec::new();
    for i in 0..spec.add_ons {
        let name = numbered(ADDON_NAMES[i % ADDON_NAMES.len()], i / ADDON_NAMES.len());
        let id = format!("{}{}", name.replace(' ', ""), id_suffix(&mut rng));
        let provider = Provider::ALL[i % Provider::ALL.len()];
        let add_on = PlanAddon {
            id: id.clone(),
            display_name: Some(name.clone()),
            state: Some(PlanState::Public),
            config_state: Some(ConfigState::Configured),
            quota_sync_state: Some(SyncState::InSync),
            last_error_message: None,
            advertisements: Some(vec![advert("en-us", &name, None)]),
            service_quotas: Some(vec![quota(provider, &instance_ids, &mut rng)]),
            subscription_count: Some(0),
            associated_plans: None,
            max_occurrences_per_plan: Some(rng.i64(1..4)),
            price: Some(format!("${}.00 per month", rng.u32(2..20))),
            extra: Default::default(),
        };
        let t = clock.tick(&mut rng);
        feeds.commit(FeedKind::Addons, EventMethod::Post, &add_on, None, t);
        add_on_ids.push(id);
    }

    // Plans, their services and add-on links, then made public (Patch with a partial entity).
    let mut plans: Vec<(String, String, Vec<Provider>, Vec<String>)> = Vec::new();
    for i in 0..spec.plans {
        let name = numbered(PLAN_NAMES[i % PLAN_NAMES.len()], i / PLAN_NAMES.len());
        let id = format!("{}{}", name.split(' ').next().unwrap_or("Plan"), id_suffix(&mut rng));
        let mut services: Vec<Provider> = Provider::ALL.into_iter().filter(|_| rng.bool()).collect();
        if services.is_empty() {
            services.push(Provider::ALL[i % Provider::ALL.len()]);
        }
        let mut ads = vec![advert("en-us", &name, Some(&format!("{name}: {} services", services.len())))];
        if i % 2 == 0 {
            ads.push(advert("de-de", &name, None));
        }
        let plan = Plan {
            id: id.clone(),
            display_name: Some(name.clone()),
            state: Some(PlanState::Private),
            config_state: Some(ConfigState::Configured),
            quota_sync_state: Some(SyncState::InSync),
            last_error_message: None,
            advertisements: Some(ads),
            service_quotas: Some(services.iter().map(|p| quota(*p, &instance_ids, &mut rng)).collect()),
            subscription_count: Some(0),
            max_subscriptions_per_account: Some(if i % 3 == 0 { 1 } else { -1 }),
            add_on_references: Some(Vec::new()),
            add_ons: Some(Vec::new()),
            invitation_code: None,
            price: None,
            extra: Default::default(),
        };
        let t = clock.tick(&mut rng);
        feeds.commit(FeedKind::Plans, EventMethod::Post, &plan, None, t);
        for p in &services {
            let link = ResourceProviderReference {
                name: p.name().into(),
                instance_id: instance_ids.iter().find(|(q, _)| q == p).map(|(_, g)| g.clone()),
                config_state: Some(ConfigState::Configured),
                extra: Default::default(),
            };
            let t = clock.tick(&mut rng);
            feeds.commit(FeedKind::PlanServices, EventMethod::Post, &link, Some(&id), t);
        }
        let mut linked = Vec::new();
        for a in &add_on_ids {
            if rng.u8(..100) < 60 {
                let link = PlanAddonReference { add_on_id: a.clone(), ..Default::default() };
                let t = clock.tick(&mut rng);
                feeds.commit(FeedKind::PlanAddons, EventMethod::Post, &link, Some(&id), t);
                linked.push(a.clone());
            }
        }
        let t = clock.tick(&mut rng);
        feeds.commit(FeedKind::Plans, EventMethod::Patch, &json!({"Id": id, "State": PlanState::Public}), None, t);
        plans.push((id, name, services, linked));
    }

    // Accounts.
    let accounts: Vec<String> = (0..spec.accounts.max(usize::from(spec.subscriptions > 0)))
        .map(|i| {
            let (f, l) = (FIRST[i % FIRST.len()], LAST[(i / FIRST.len() + i) % LAST.len()]);
            let n = i / (FIRST.len() * LAST.len());
            let suffix = if n == 0 { String::new() } else { n.to_string() };
            format!("{f}.{l}{suffix}@{}", DOMAINS[i % DOMAINS.len()])
        })
        .collect();

    // Subscriptions, some with add-ons.
    let mut subjects = Vec::new();
    let mut subs: Vec<GeneratedSubscription> = Vec::new();
    if !plans.is_empty() {
        for i in 0..spec.subscriptions {
            let plan_index = rng.usize(..plans.len());
            let (plan_id, plan_name, services, linked) = &plans[plan_index];
            let sub_id = guid_from(&mut rng);
            let co_admins = match i % 3 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(vec![format!("ops{}@{}", i, DOMAINS[i % DOMAINS.len()])]),
            };
            let t = clock.tick(&mut rng);
            let sub = AdminSubscription {
                subscription_id: sub_id.clone(),
                subscription_name: Some(plan_name.clone()),
                account_admin_live_email_id: Some(accounts[i % accounts.len()].clone()),
                service_admin_live_email_id: None,
                co_admin_names: co_admins,
                add_on_references: Some(Vec::new()),
                add_ons: Some(Vec::new()),
                state: Some(AdminSubscriptionState::Active),
                quota_sync_state: Some(SyncState::InSync),
                activation_sync_state: Some(SyncState::InSync),
                plan_id: Some(plan_id.clone()),
                services: Some(services.iter().map(|p| service(*p)).collect()),
                last_error_message: None,
                features: None,
                offer_friendly_name: None,
                offer_category: None,
                created: Some(t),
                extra: Default::default(),
            };
            feeds.commit(FeedKind::Subscriptions, EventMethod::Post, &sub, None, t);
            let mut bought = Vec::new();
            if !linked.is_empty() && rng.u8(..100) < 40 {
                let add_on = linked[rng.usize(..linked.len())].clone();
                let t = clock.tick(&mut rng);
                let instance = guid_from(&mut rng);
                let r = PlanAddonReference {
                    add_on_id: add_on.clone(),
                    add_on_instance_id: Some(instance.clone()),
                    acquisition_time: Some(t),
                    extra: Default::default(),
                };
                feeds.commit(FeedKind::SubscriptionAddons, EventMethod::Post, &r, Some(&sub_id), t);
                bought.push((add_on, instance));
            }
            for p in services {
                let resource = match p {
                    Provider::Web => format!("{}-web", WORDS[(i + subjects.len()) % WORDS.len()]),
                    Provider::Sql | Provider::MySql => format!("db{}", i + 1),
                    Provider::Vm => format!("vm-{}-{:02}", WORDS[i % WORDS.len()], i + 1),
                };
                subjects.push(UsageSubject { subscription_id: sub_id.clone(), provider: *p, resource });
            }
            subs.push((sub_id, plan_index, bought));
        }
    }

    // Suspensions (full PUT) and deletions (add-ons removed first, then DELETE with null collections).
    let n = subs.len();
    let suspended = n * usize::from(spec.suspended_percent.min(100)) / 100;
    let deleted = (n * usize::from(spec.deleted_percent.min(100)) / 100).min(n - suspended);
    for (sub_id, _, _) in subs.iter().take(suspended) {
        let key = sub_id.to_ascii_lowercase();
        if let Some(current) = feeds.catalogue.subscriptions.get(&key).cloned() {
            let mut entity = current;
            entity["State"] = json!(AdminSubscriptionState::Suspended);
            let t = clock.tick(&mut rng);
            feeds.commit(FeedKind::Subscriptions, EventMethod::Put, &entity, None, t);
        }
    }
    for (sub_id, plan_index, bought) in subs.iter().skip(suspended).take(deleted) {
        for (add_on, instance) in bought {
            let t = clock.tick(&mut rng);
            let r = PlanAddonReference {
                add_on_id: add_on.clone(),
                add_on_instance_id: Some(instance.clone()),
                acquisition_time: None,
                extra: Default::default(),
            };
            feeds.commit(FeedKind::SubscriptionAddons, EventMethod::Delete, &r, Some(sub_id), t);
        }
        let t = clock.tick(&mut rng);
        let entity = AdminSubscription {
            subscription_id: sub_id.clone(),
            subscription_name: Some(plans[*plan_index].1.clone()),
            state: Some(AdminSubscriptionState::DeletePending),
            plan_id: Some(plans[*plan_index].0.clone()),
            quota_sync_state: Some(SyncState::InSync),
            activation_sync_state: Some(SyncState::InSync),
            ..Default::default()
        };
        feeds.commit(FeedKind::Subscriptions, EventMethod::Delete, &entity, None, t);
    }

    // Later catalogue changes: subscription counts (Patch), a price change (PUT), an unlinked add-on,
    // a decommissioned plan.
    for (plan_id, ..) in &plans {
        let count = subs.iter().filter(|(_, p, _)| plans[*p].0 == *plan_id).count();
        let t = clock.tick(&mut rng);
        feeds.commit(FeedKind::Plans, EventMethod::Patch, &json!({"Id": plan_id, "SubscriptionCount": count}), None, t);
    }
    if let Some(first) = add_on_ids.first() {
        if let Some(mut a) = feeds.catalogue.add_ons.get(&first.to_ascii_lowercase()).cloned() {
            a["Price"] = json!(format!("${}.50 per month", rng.u32(2..20)));
            let t = clock.tick(&mut rng);
            feeds.commit(FeedKind::Addons, EventMethod::Put, &a, None, t);
        }
    }
    if let Some((plan_id, _, _, linked)) = plans.iter().find(|p| p.3.len() > 1) {
        let t = clock.tick(&mut rng);
        let link = PlanAddonReference { add_on_id: linked[linked.len() - 1].clone(), ..Default::default() };
        feeds.commit(FeedKind::PlanAddons, EventMethod::Delete, &link, Some(plan_id), t);
    }
    if plans.len() >= 3 {
        let t = clock.tick(&mut rng);
        let id = &plans[plans.len() - 1].0;
        feeds.commit(
            FeedKind::Plans,
            EventMethod::Patch,
            &json!({"Id": id, "State": PlanState::Decommissioned}),
            None,
            t,
        );
    }

    // Usage is generated for subscriptions that were not deleted.
    let deleted_ids: Vec<&String> = subs.iter().skip(suspended).take(deleted).map(|s| &s.0).collect();
    let kept: Vec<UsageSubject> =
        subjects.iter().filter(|s| !deleted_ids.contains(&&s.subscription_id)).cloned().collect();
    GeneratedCatalogue { subjects: if kept.is_empty() { subjects } else { kept } }
}

fn numbered(name: &str, n: usize) -> String {
    if n == 0 {
        name.to_owned()
    } else {
        format!("{name} {}", n + 1)
    }
}

fn advert(lang: &str, name: &str, description: Option<&str>) -> PlanAdvertisement {
    PlanAdvertisement {
        language_code: lang.into(),
        display_name: Some(name.into()),
        description: description.map(str::to_owned),
        extra: Default::default(),
    }
}

/// A subscription's service entry for a provider.
pub(crate) fn service(p: Provider) -> SubscriptionService {
    SubscriptionService {
        service_type: p.name().into(),
        state: Some("Registered".into()),
        quota_sync_state: Some(SyncState::InSync),
        activation_sync_state: Some(SyncState::InSync),
        base_quota_settings: Some(Vec::new()),
        extra: Default::default(),
    }
}

/// The services of a plan (from its `ServiceQuotas`), as subscription service entries.
pub(crate) fn services_of_plan(plan: &Value) -> Vec<SubscriptionService> {
    plan.get("ServiceQuotas")
        .and_then(Value::as_array)
        .map(|qs| {
            qs.iter()
                .filter_map(|q| {
                    let name = q.get("ServiceName")?.as_str()?;
                    let settings: Vec<ServiceQuotaSetting> =
                        q.get("Settings").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default();
                    Some(SubscriptionService {
                        service_type: name.to_owned(),
                        state: Some("Registered".into()),
                        quota_sync_state: Some(SyncState::InSync),
                        activation_sync_state: Some(SyncState::InSync),
                        base_quota_settings: Some(settings),
                        extra: Default::default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One random catalogue change for live mode, committed without approval (an administrator's change or WAP's
/// own bookkeeping): a plan Patch, a suspension or re-activation, or a new subscription add-on.
pub(crate) fn live_event(feeds: &mut Feeds, rng: &mut fastrand::Rng) {
    let t = crate::time::feed_now();
    let plans: Vec<String> =
        feeds.catalogue.plans.values().filter_map(|p| p.get("Id")?.as_str().map(str::to_owned)).collect();
    let subs: Vec<Value> = feeds.catalogue.subscriptions.values().cloned().collect();
    match rng.u8(..3) {
        0 if !subs.is_empty() => {
            let mut s = subs[rng.usize(..subs.len())].clone();
            let next = if s.get("State") == Some(&json!(2)) { 1 } else { 2 };
            s["State"] = json!(next);
            feeds.commit(FeedKind::Subscriptions, EventMethod::Put, &s, None, t);
        }
        1 if !subs.is_empty() && !feeds.catalogue.add_ons.is_empty() => {
            let s = &subs[rng.usize(..subs.len())];
            let add_ons: Vec<&Value> = feeds.catalogue.add_ons.values().collect();
            let a = add_ons[rng.usize(..add_ons.len())].get("Id").and_then(Value::as_str).unwrap_or("").to_owned();
            let sub_id = s.get("SubscriptionID").and_then(Value::as_str).unwrap_or("").to_owned();
            let r = PlanAddonReference {
                add_on_id: a,
                add_on_instance_id: Some(guid_from(rng)),
                acquisition_time: Some(t),
                extra: Default::default(),
            };
            feeds.commit(FeedKind::SubscriptionAddons, EventMethod::Post, &r, Some(&sub_id), t);
        }
        _ if !plans.is_empty() => {
            let id = &plans[rng.usize(..plans.len())];
            let patch = json!({"Id": id, "LastErrorMessage": null, "SubscriptionCount": rng.u32(0..100)});
            feeds.commit(FeedKind::Plans, EventMethod::Patch, &patch, None, t);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_covers_every_feed() {
        let start = DateTime::parse_from_rfc3339("2015-06-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let spec = DatasetSpec::small();
        let mut a = Feeds::new();
        let mut b = Feeds::new();
        let ga = generate_catalogue(&spec, 7, start, &mut a);
        generate_catalogue(&spec, 7, start, &mut b);
        for feed in FeedKind::EVENT_FEEDS {
            let ja: Vec<&Value> = a.store.all(feed).iter().map(|e| &e.json).collect();
            let jb: Vec<&Value> = b.store.all(feed).iter().map(|e| &e.json).collect();
            assert_eq!(ja, jb, "{feed}");
            assert!(!ja.is_empty(), "{feed} has events");
        }
        assert!(!ga.subjects.is_empty());
        let methods: Vec<&str> =
            a.store.all(FeedKind::Subscriptions).iter().filter_map(|e| e.json["Method"].as_str()).collect();
        assert!(methods.contains(&"POST") && methods.contains(&"PUT") && methods.contains(&"DELETE"));
        let plan_methods: Vec<&str> =
            a.store.all(FeedKind::Plans).iter().filter_map(|e| e.json["Method"].as_str()).collect();
        assert!(plan_methods.contains(&"Patch"));
        // One id sequence over all feeds: no id is used twice.
        let mut all: Vec<i64> =
            FeedKind::EVENT_FEEDS.iter().flat_map(|f| a.store.all(*f).iter().map(|e| e.id)).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        let t = a.store.all(FeedKind::Plans)[0].json["NotificationEventTimeCreated"].as_str().unwrap().to_owned();
        assert_eq!(t.len(), "2015-05-28T14:02:11.207".len(), "{t}");
    }
}
