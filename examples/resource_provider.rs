//! A small "file shares" resource provider built with `wap-resource-provider`: quotas (`MaxShares`,
//! `MaxStorageGB`), validation with localized messages, and hourly metered usage served to WAP's collector.
//!
//! ```sh
//! cargo run --example resource_provider                 # plays the whole story against a simulated WAP
//! FILESHARES_NOTIFY_PASSWORD='…' FILESHARES_USAGE_PASSWORD='…' \
//!   cargo run --example resource_provider -- --listen 0.0.0.0:30030 \
//!     --public-url https://fileshares.corp.test:30030 [--ledger fileshares-usage.db] [--meter-every 3600]
//! ```
//!
//! By default it starts a `wap-sim`, registers itself, answers the admin's quota calls, receives a
//! subscription fanned out by WAP, lets the tenant create shares, meters three hours of usage and shows the
//! records arriving on the simulated Usage Service `/usage` feed. With `--listen` it serves for real (plain
//! HTTP: put it behind your TLS terminator) and prints the registration for `--public-url`; see the crate
//! README, "Registering the provider with WAP".

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wap_billing::resource_provider::{
    async_trait, CallContext, CreateOutcome, DeleteOutcome, EndpointAuth, NotificationError, NotificationHandler,
    QuotaResults, RegistrationBuilder, RpServer, UpdateOutcome, UsageLedger,
};
use wap_billing::sim::{RpRegistration, WapSim};
use wap_billing::types::rp::{
    QuotaUpdateBatch, QuotaUpdateResultBatch, RpSubscriptionState, ServiceUsage, ServiceUsageSummary, Subscription,
};
use wap_billing::types::{
    BasicCredentials, OrEmpty, ResourceProviderError, RpUsageRecord, ServiceQuotaSetting, StringMap, WapDateTime,
};

const NAME: &str = "fileshares";

/// A quota key, its bounds and its messages.
struct QuotaKey {
    key: &'static str,
    max: u64,
    default: u64,
}

const QUOTAS: [QuotaKey; 2] =
    [QuotaKey { key: "MaxShares", max: 100, default: 5 }, QuotaKey { key: "MaxStorageGB", max: 10_240, default: 100 }];

/// One tenant subscription: WAP's view plus the shares the tenant created.
#[derive(Debug, Clone)]
struct Tenant {
    subscription: Subscription,
    /// share name → size in GB.
    shares: BTreeMap<String, u64>,
}

/// The provider: tenants in memory (a real one uses its database), usage in the ledger.
#[derive(Clone)]
struct FileShares {
    tenants: Arc<Mutex<BTreeMap<String, Tenant>>>,
    ledger: UsageLedger,
}

fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

fn limit(settings: &[ServiceQuotaSetting], name: &str) -> u64 {
    let default = QUOTAS.iter().find(|q| q.key == name).map_or(0, |q| q.default);
    settings
        .iter()
        .find(|s| s.key.eq_ignore_ascii_case(name))
        .and_then(|s| s.value.trim().parse().ok())
        .unwrap_or(default)
}

/// Checks quota values; the message follows the caller's `Accept-Language` (English or Portuguese).
fn check_quota(ctx: &CallContext, settings: &[ServiceQuotaSetting]) -> Result<(), NotificationError> {
    for s in settings {
        let Some(q) = QUOTAS.iter().find(|q| q.key.eq_ignore_ascii_case(&s.key)) else { continue };
        if s.value.trim().parse::<u64>().is_ok_and(|v| v <= q.max) {
            continue;
        }
        let template = match ctx.preferred_language(&["en-US", "pt-PT"]) {
            Some("pt-PT") => "{0} tem de ser um número inteiro entre 0 e {1}; o valor '{2}' não é válido.",
            _ => "{0} must be a whole number between 0 and {1}; the value '{2}' is not valid.",
        };
        let params = [q.key.to_owned(), q.max.to_string(), s.value.clone()];
        let message = template.replace("{0}", &params[0]).replace("{1}", &params[1]).replace("{2}", &params[2]);
        return Err(NotificationError::bad_request(ResourceProviderError {
            code: "InvalidQuota".into(),
            message,
            message_template: Some(template.into()),
            parameters: Some(params.to_vec()),
            ..Default::default()
        }));
    }
    Ok(())
}

/// Plan quota plus add-on quotas: add-ons add to the base limit.
fn combined_quota(batch: &QuotaUpdateBatch) -> Vec<ServiceQuotaSetting> {
    QUOTAS
        .iter()
        .map(|q| {
            let base = limit(batch.base_quota.or_empty(), q.key);
            let extra: u64 = batch
                .add_on_quotas
                .or_empty()
                .iter()
                .filter(|a| a.iter().any(|s| s.key.eq_ignore_ascii_case(q.key)))
                .map(|a| limit(a, q.key))
                .sum();
            ServiceQuotaSetting::new(q.key, (base + extra).min(q.max).to_string())
        })
        .collect()
}

impl FileShares {
    fn new(ledger: UsageLedger) -> Self {
        FileShares { tenants: Arc::default(), ledger }
    }

    /// What the tenant portal (the provider's tenant API) would call: create a share within the quota.
    fn create_share(&self, subscription_id: &str, name: &str, size_gb: u64) -> Result<(), String> {
        let mut tenants = self.tenants.lock().unwrap();
        let t = tenants.get_mut(&key(subscription_id)).ok_or("unknown subscription")?;
        if t.subscription.state != RpSubscriptionState::Active {
            return Err("the subscription is not active".into());
        }
        let quota = t.subscription.quota_settings.or_empty();
        let used: u64 = t.shares.values().sum();
        if t.shares.len() as u64 >= limit(quota, "MaxShares") {
            return Err(format!("MaxShares ({}) reached", limit(quota, "MaxShares")));
        }
        if used + size_gb > limit(quota, "MaxStorageGB") {
            return Err(format!("MaxStorageGB ({}) would be exceeded", limit(quota, "MaxStorageGB")));
        }
        t.shares.insert(name.to_owned(), size_gb);
        Ok(())
    }

    /// Meters one interval: a record per share (aggregated per resource), appended durably in one batch.
    async fn meter(&self, start: WapDateTime, end: WapDateTime) -> Result<usize, Box<dyn std::error::Error>> {
        let records: Vec<RpUsageRecord> = {
            let tenants = self.tenants.lock().unwrap();
            tenants
                .values()
                .filter(|t| t.subscription.state != RpSubscriptionState::DeletePending)
                .flat_map(|t| {
                    t.shares.iter().map(move |(name, gb)| RpUsageRecord {
                        subscription_id: t.subscription.subscription_id.clone(),
                        resource_id: Some(name.clone()),
                        start_time: start,
                        end_time: end,
                        service_type: Some("Default".into()),
                        properties: Some([("Protocol", "SMB3")].into_iter().collect::<StringMap>()),
                        resources: [("StorageGB".to_owned(), gb.to_string()), ("Shares".to_owned(), "1".to_owned())]
                            .into_iter()
                            .collect::<StringMap>(),
                        ..Default::default()
                    })
                })
                .collect()
        };
        let n = records.len();
        self.ledger.append_all(records).await?;
        Ok(n)
    }
}

#[async_trait]
impl NotificationHandler for FileShares {
    async fn create_subscription(
        &self,
        ctx: &CallContext,
        s: Subscription,
    ) -> Result<CreateOutcome, NotificationError> {
        check_quota(ctx, s.quota_settings.or_empty())?;
        let mut tenants = self.tenants.lock().unwrap();
        // A retried create answers as the first one did.
        let t = tenants
            .entry(key(&s.subscription_id))
            .or_insert_with(|| Tenant { subscription: s.clone(), shares: BTreeMap::new() });
        Ok(CreateOutcome::Created(t.subscription.clone()))
    }

    async fn get_subscription(&self, _: &CallContext, id: &str) -> Result<Option<Subscription>, NotificationError> {
        Ok(self.tenants.lock().unwrap().get(&key(id)).map(|t| t.subscription.clone()))
    }

    async fn update_subscription(
        &self,
        ctx: &CallContext,
        s: Subscription,
    ) -> Result<UpdateOutcome, NotificationError> {
        check_quota(ctx, s.quota_settings.or_empty())?;
        let mut tenants = self.tenants.lock().unwrap();
        Ok(match tenants.get_mut(&key(&s.subscription_id)) {
            Some(t) => {
                t.subscription = s.clone();
                UpdateOutcome::Updated(s)
            }
            None => UpdateOutcome::NotFound,
        })
    }

    async fn delete_subscription(&self, _: &CallContext, id: &str) -> Result<DeleteOutcome, NotificationError> {
        // Usage already metered stays in the ledger until WAP's collector acknowledges it.
        Ok(match self.tenants.lock().unwrap().remove(&key(id)) {
            Some(_) => DeleteOutcome::Deleted,
            None => DeleteOutcome::NotFound,
        })
    }

    async fn usage_summary(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<Option<ServiceUsageSummary>, NotificationError> {
        let tenants = self.tenants.lock().unwrap();
        let Some(t) = tenants.get(&key(id)) else { return Ok(None) };
        let quota = t.subscription.quota_settings.or_empty();
        let line = |name: &str, unit: &str, current: u64, key: &str| ServiceUsage {
            display_name: Some(name.into()),
            current_value: current as i64,
            limit: limit(quota, key) as i64,
            unit_display_name: Some(unit.into()),
            group_id: Some("shares".into()),
            group_display_name: Some("File shares".into()),
            ..Default::default()
        };
        Ok(Some(ServiceUsageSummary {
            service_name: ctx.provider_name().to_owned(),
            service_display_name: Some("File Shares".into()),
            retrieved_successfully: true,
            usages: Some(vec![
                line("Shares", "shares", t.shares.len() as u64, "MaxShares"),
                line("Storage", "GB", t.shares.values().sum(), "MaxStorageGB"),
            ]),
            ..Default::default()
        }))
    }

    async fn update_quota(
        &self,
        ctx: &CallContext,
        b: QuotaUpdateBatch,
    ) -> Result<QuotaUpdateResultBatch, NotificationError> {
        check_quota(ctx, b.base_quota.or_empty())?;
        let quota = combined_quota(&b);
        let mut tenants = self.tenants.lock().unwrap();
        let mut results = QuotaResults::new();
        for id in b.subscription_ids_to_update.or_empty() {
            match tenants.get_mut(&key(id)) {
                Some(t) => {
                    t.subscription.quota_settings = Some(quota.clone());
                    results.updated(id.clone());
                }
                None => {
                    results.failed(
                        id.clone(),
                        ResourceProviderError::new("SubscriptionNotFound", format!("{id} is unknown")),
                    );
                }
            }
        }
        Ok(results.finish())
    }

    async fn validate_quota(&self, ctx: &CallContext, b: QuotaUpdateBatch) -> Result<(), NotificationError> {
        check_quota(ctx, b.base_quota.or_empty())?;
        b.add_on_quotas.or_empty().iter().try_for_each(|a| check_quota(ctx, a))
    }

    async fn default_quota(&self, _: &CallContext) -> Result<Vec<ServiceQuotaSetting>, NotificationError> {
        Ok(QUOTAS.iter().map(|q| ServiceQuotaSetting::new(q.key, q.default.to_string())).collect())
    }
}

fn password(var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| format!("set {var} (the password WAP uses for this endpoint)"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_logging("warn");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    match arg("--listen") {
        Some(listen) => serve(listen.parse()?, arg("--public-url"), arg("--ledger"), arg("--meter-every")).await,
        None => demo().await,
    }
}

/// Serves for real until Ctrl-C.
async fn serve(
    listen: SocketAddr,
    public_url: Option<String>,
    ledger_path: Option<String>,
    meter_every: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let notify = BasicCredentials::new("wapnotify", password("FILESHARES_NOTIFY_PASSWORD")?);
    let usage = BasicCredentials::new("wapusage", password("FILESHARES_USAGE_PASSWORD")?);
    let ledger = UsageLedger::open(ledger_path.unwrap_or_else(|| "fileshares-usage.db".into())).await?;
    let provider = FileShares::new(ledger.clone());
    let server = RpServer::builder(NAME)
        .notification("/admin", EndpointAuth::basic(notify.clone()), provider.clone())
        .usage("/", EndpointAuth::basic(usage.clone()), ledger)
        .bind(listen)
        .await?;
    let public = public_url.unwrap_or_else(|| format!("https://{listen}"));
    let public = public.trim_end_matches('/');
    let registration = RegistrationBuilder::new(NAME)
        .display_name("File Shares")
        .notification_endpoint(format!("{public}/admin"), &EndpointAuth::basic(notify))
        .usage_endpoint(format!("{public}/"), &EndpointAuth::basic(usage))
        .max_quota_update_batch_size(5)
        .build()?;
    println!("Listening on {} (HTTP; WAP reaches it at {public}).", server.local_addr());
    println!(
        "\nRegistration (POST https://<admin-api>:30004/resourceproviders), passwords redacted:\n{}",
        registration.to_redacted_json()
    );
    println!("\nOr, on the Admin API machine:\n{}", registration.powershell_script());
    let every = Duration::from_secs(meter_every.and_then(|s| s.parse().ok()).unwrap_or(3600));
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut from = WapDateTime::now();
    loop {
        tokio::select! {
            _ = support::shutdown_signal() => break,
            _ = tick.tick() => {
                let to = WapDateTime::now();
                match provider.meter(from, to).await {
                    Ok(n) => println!("metered {n} share(s) for {from} – {to}"),
                    Err(e) => eprintln!("metering failed: {e}"),
                }
                from = to;
            }
        }
    }
    server.shutdown().await;
    Ok(())
}

/// The whole story against a simulated WAP.
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let wap = WapSim::builder().empty().start().await?;
    println!("Simulated WAP Usage Service at {}", wap.usage_service_url());

    // 1. The provider: notification and usage endpoints, each with its own credentials; a durable ledger.
    let notify = BasicCredentials::new("wapnotify", "Demo-N0tify!");
    let usage = BasicCredentials::new("wapusage", "Demo-Us4ge!");
    let ledger = UsageLedger::open(dir.path().join("fileshares-usage.db")).await?;
    let provider = FileShares::new(ledger.clone());
    let server = RpServer::builder(NAME)
        .notification("/admin", EndpointAuth::basic(notify.clone()), provider.clone())
        .usage("/", EndpointAuth::basic(usage.clone()), ledger.clone())
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await?;
    let base = server.base_url();
    println!("File shares provider at {base}");

    // 2. Registration: the same object a real WAP gets, used here to register with the simulator.
    let registration = RegistrationBuilder::new(NAME)
        .display_name("File Shares")
        .allow_http(true) // loopback demo only
        .notification_endpoint(format!("{base}admin"), &EndpointAuth::basic(notify))
        .usage_endpoint(base.clone(), &EndpointAuth::basic(usage))
        .max_quota_update_batch_size(5)
        .build()?;
    println!("\nRegistration (passwords redacted):\n{}", registration.to_redacted_json());
    wap.register_resource_provider(RpRegistration::from_resource_provider(registration.resource_provider())?);
    let calls = wap.notifications(NAME);

    // 3. The admin adds the service to a plan: default quota, then validation of what the admin typed.
    let defaults: Vec<ServiceQuotaSetting> = calls.default_quota().await?.json()?;
    println!(
        "\nDefault quota: {}",
        defaults.iter().map(|s| format!("{}={}", s.key, s.value)).collect::<Vec<_>>().join(", ")
    );
    let typo = QuotaUpdateBatch {
        base_quota: Some(vec![ServiceQuotaSetting::new("MaxStorageGB", "lots")]),
        ..Default::default()
    };
    for language in ["en-US", "pt-PT"] {
        let r = wap.notifications(NAME).accept_language(language).validate_quota(&typo).await?;
        let e: ResourceProviderError = r.json()?;
        println!("Validate MaxStorageGB=lots ({language}): {} {}", r.status, e.message);
    }

    // 4. A tenant subscribes: WAP fans the subscription out to the provider.
    let sub = Subscription {
        subscription_id: "b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796".into(),
        subscription_name: Some("Contoso shares".into()),
        admin_id: Some("ana.ribeiro@fabrikam.test".into()),
        quota_settings: Some(defaults),
        ..Default::default()
    };
    for (rp, answer) in wap.fan_out_subscription(&sub).await {
        println!("\nCreate subscription → {rp}: {}", answer?.status);
    }

    // 5. The tenant creates shares; the plan's quota is raised (Update Quota) to fit a big one.
    provider.create_share(&sub.subscription_id, "projects", 60)?;
    provider.create_share(&sub.subscription_id, "home", 30)?;
    if let Err(why) = provider.create_share(&sub.subscription_id, "archive", 400) {
        println!("Create share 'archive' (400 GB) refused: {why}");
    }
    let raise = QuotaUpdateBatch {
        base_quota: Some(vec![
            ServiceQuotaSetting::new("MaxShares", "10"),
            ServiceQuotaSetting::new("MaxStorageGB", "500"),
        ]),
        add_on_quotas: Some(vec![vec![ServiceQuotaSetting::new("MaxStorageGB", "100")]]),
        subscription_ids_to_update: Some(vec![sub.subscription_id.clone()]),
        ..Default::default()
    };
    let result: QuotaUpdateResultBatch = wap.notifications(NAME).for_plan("gold").update_quota(&raise).await?.json()?;
    println!(
        "Admin raises plan 'gold' (Update Quota): MaxShares 10, MaxStorageGB 500 + 100 from an add-on = {} GB; \
         updated {:?}, failed {:?}",
        combined_quota(&raise).iter().find(|q| q.key == "MaxStorageGB").map(|q| q.value.as_str()).unwrap_or("?"),
        result.updated_subscription_ids.or_empty(),
        result.failed_subscription_ids.or_empty()
    );
    provider.create_share(&sub.subscription_id, "archive", 400)?;
    println!("Create share 'archive' (400 GB) within the new quota: created (90 + 400 of 600 GB)");

    // 6. Three hours of metering, appended durably as they happen.
    let now = WapDateTime::now().to_utc();
    for hour in (1..=3u64).rev() {
        let start = WapDateTime::from_utc(now - Duration::from_secs(3600 * hour));
        let end = WapDateTime::from_utc(now - Duration::from_secs(3600 * (hour - 1)));
        let n = provider.meter(start, end).await?;
        println!("Metered {n} share(s) for {start} – {end}");
    }
    let summary: ServiceUsageSummary = calls.usage_summary(&sub.subscription_id).await?.json()?;
    for u in summary.usages.or_empty() {
        println!(
            "Usage summary: {} {} of {} {}",
            u.display_name.as_deref().unwrap_or(""),
            u.current_value,
            u.limit,
            u.unit_display_name.as_deref().unwrap_or("")
        );
    }

    // 7. WAP's collector pulls /usage; the records land on the Usage Service feed, acknowledged in the ledger.
    let report = wap.collect_usage_once(NAME).await?;
    println!("\nCollector: {} page(s), {} record(s), lastID now {}", report.pages, report.records, report.last_id);
    println!("Simulated WAP /usage feed:");
    for r in wap.usage_records() {
        println!(
            "  EventId {:>3}  {}  ExternalRecordId {:>2}  {}  {:<9} {}",
            r.event_id,
            r.provider_name.as_deref().unwrap_or(""),
            r.external_record_id.as_deref().unwrap_or(""),
            r.start_time,
            r.resource_id.as_deref().unwrap_or(""),
            r.resources.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        );
    }
    let stats = ledger.stats().await?;
    println!("Ledger: {} pending, acknowledged through {}", stats.pending, stats.acknowledged_through);

    // 8. The subscription is deleted.
    println!("\nDelete subscription: {}", calls.delete_subscription(&sub.subscription_id).await?.status);
    server.shutdown().await;
    wap.shutdown().await;
    Ok(())
}
