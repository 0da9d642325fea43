//! Usage into WHMCS through the engine's intent journal: wap-sim's usage feed → the usage processor (journaled,
//! lines per subscription, meter and month) → `WhmcsBilling` → `AddBillableItem` on the WHMCS double, which
//! appends on every call.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_usage_billed_once, client, prepared_for_dataset};
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, HaltReason, InDoubtResolution, Phase, ProcessorKind};
use wap_billing_whmcs::double::{Fault, FaultKind, WhmcsDouble};
use wap_billing_whmcs::{WhmcsBilling, WhmcsBillingConfig};
use wap_sim::{DatasetSpec, WapSim};

const LIMIT: Duration = Duration::from_secs(60);

async fn sim(records: u64) -> WapSim {
    WapSim::builder().seed(21).dataset(DatasetSpec::with_usage_records(records)).start().await.unwrap()
}

fn billing(sim: &WapSim, double: &WhmcsDouble) -> Arc<WhmcsBilling> {
    let mut config = WhmcsBillingConfig::new("mailin").meter_price("DatabaseCount", "0.05");
    for (i, plan) in sim.plans().iter().enumerate() {
        config = config.plan(&plan.id, 1 + i as u64);
    }
    for (i, addon) in sim.add_ons().iter().enumerate() {
        config = config.addon(&addon.id, 5 + i as u64);
    }
    WhmcsBilling::new(client(double), config)
}

async fn adapter(sim: &WapSim, billing: Arc<WhmcsBilling>, dir: &tempfile::TempDir) -> Adapter {
    let config = EngineConfig::builder()
        .instance_id("whmcs-usage")
        .election_mode(ElectionMode::SingleInstance)
        .subscription_responder_enabled(false)
        .pricing_responder_enabled(false)
        .sync_interval(Duration::from_millis(50))
        .retry_sleep(Duration::from_millis(20))
        .wap_retry_initial(Duration::from_millis(10))
        .wap_retry_max(Duration::from_millis(100))
        .batch_size(250)
        .state_database_url(format!("sqlite://{}", dir.path().join("state.db").display()))
        .build()
        .unwrap();
    let usage = wap_billing_engine::usage_client::UsageClient::builder()
        .base_url(sim.usage_service_url().as_str())
        .basic_credentials(sim.credentials());
    Adapter::builder(config)
        .usage_service(usage)
        .billing_system(billing)
        .store_identity_map()
        .billing_system_version("8.13.1")
        .start()
        .await
        .unwrap()
}

/// Syncs until every processor is caught up or halted (usage waits for its subscriptions' services).
async fn settle(adapter: &Adapter) -> Vec<wap_billing_engine::ProcessorStatus> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let statuses = adapter.sync(LIMIT).await.unwrap();
        if statuses.iter().all(|s| matches!(s.phase, Phase::CaughtUp | Phase::Halted)) {
            return statuses;
        }
        assert!(tokio::time::Instant::now() < deadline, "never settled: {statuses:#?}");
        adapter.wake();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_billed_once_per_line_and_calls_grow_with_lines_not_records() {
    let sim = sim(2_000).await;
    let double = prepared_for_dataset().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let adapter = adapter(&sim, billing(&sim, &double), &dir).await;
    let statuses = settle(&adapter).await;
    assert!(statuses.iter().all(|s| s.phase == Phase::CaughtUp), "{statuses:#?}");
    let lines = assert_usage_billed_once(&double, &sim.usage_records());
    let calls = double.call_count("AddBillableItem");
    assert_eq!(calls, lines, "one AddBillableItem per line, none repeated");
    let values: usize = sim.usage_records().iter().map(|r| r.resources.len()).sum();
    assert!(lines * 2 < values, "{lines} lines for {values} meter values: lines sum records");
    // Priced meters carry amount = quantity × unit price.
    let cpu = double
        .billable_items()
        .into_iter()
        .find(|b| b.description.contains(" DatabaseCount "))
        .expect("a DatabaseCount line");
    let q: f64 = cpu.hours.parse().unwrap();
    assert_eq!(cpu.amount, format!("{:.2}", q * 0.05), "{cpu:?}");
    assert_eq!(cpu.invoiceaction, "nextcron");
    adapter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_whose_answer_was_lost_halts_in_doubt_until_the_invoice_shows_it() {
    let sim = sim(600).await;
    let double = prepared_for_dataset().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The third billable item is committed, then WHMCS answers an error page: the handler cannot tell.
    double.inject(Fault::on("AddBillableItem", FaultKind::ErrorPageAfterCommit).after(2));
    let adapter = adapter(&sim, billing(&sim, &double), &dir).await;
    let statuses = settle(&adapter).await;
    let usage = statuses.iter().find(|s| s.processor == ProcessorKind::Usage).unwrap();
    assert_eq!(usage.phase, Phase::Halted, "{usage:#?}");
    let halt = usage.halt.as_ref().unwrap();
    assert_eq!(halt.reason, HaltReason::InDoubt, "{halt:?}");
    assert!(halt.error.contains("Billable Items"), "the halt tells the operator where to look: {}", halt.error);
    assert_eq!(double.call_count("AddBillableItem"), 3, "nothing more was sent while in doubt");

    // WHMCS's daily cron invoices the items; `resume` reconciles again and now finds the lost line on the invoice:
    // the batch goes on from the next line, nothing is billed twice.
    assert!(double.run_cron() > 0);
    adapter.resume(ProcessorKind::Usage, "ops").await.unwrap();
    let statuses = settle(&adapter).await;
    assert!(statuses.iter().all(|s| s.phase == Phase::CaughtUp), "{statuses:#?}");
    let lines = assert_usage_billed_once(&double, &sim.usage_records());
    assert_eq!(double.call_count("AddBillableItem"), lines, "the lost line was not sent again");
    adapter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_an_uninvoiced_open_intent_stays_in_doubt_until_the_operator_resolves_it() {
    let sim = sim(600).await;
    let double = prepared_for_dataset().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The fifth line is committed, then WHMCS answers an error page: the process reconciles and halts in doubt.
    double.inject(Fault::on("AddBillableItem", FaultKind::ErrorPageAfterCommit).after(4));
    let first = adapter(&sim, billing(&sim, &double), &dir).await;
    let statuses = settle(&first).await;
    assert!(statuses.iter().any(|s| s.phase == Phase::Halted), "{statuses:#?}");
    first.shutdown().await;

    // A new process knows nothing of the batch: uninvoiced, it stays in doubt; the operator checks WHMCS's
    // Billing → Billable Items, deletes the batch's partial lines and has it sent again.
    let second = adapter(&sim, billing(&sim, &double), &dir).await;
    second.resume(ProcessorKind::Usage, "ops").await.unwrap();
    let statuses = settle(&second).await;
    let usage = statuses.iter().find(|s| s.processor == ProcessorKind::Usage).unwrap();
    assert_eq!(usage.halt.as_ref().map(|h| h.reason.clone()), Some(HaltReason::InDoubt), "{usage:#?}");
    let intent = second.operator().intent(ProcessorKind::Usage).await.unwrap().expect("the open intent");
    let partial: Vec<u64> = double
        .billable_items()
        .iter()
        .filter(|b| wap_billing_whmcs::parse_usage_marker(&b.description).is_some_and(|(t, ..)| t == intent.token))
        .map(|b| b.id)
        .collect();
    assert_eq!(partial.len(), 5, "lines 1–5 of the batch landed, no more");
    for id in partial {
        assert!(double.delete_billable_item(id));
    }
    second
        .resolve_in_doubt(ProcessorKind::Usage, InDoubtResolution::SendAgain, "ops", "deleted in WHMCS")
        .await
        .unwrap();
    let statuses = settle(&second).await;
    assert!(statuses.iter().all(|s| s.phase == Phase::CaughtUp), "{statuses:#?}");
    assert_usage_billed_once(&double, &sim.usage_records());
    second.shutdown().await;

    // Once invoiced, a restart finds a batch on the invoices and needs nobody.
    assert!(double.run_cron() > 0);
    let items = double.billable_items();
    assert!(items.iter().all(|b| b.invoiceid.is_some()));
}
