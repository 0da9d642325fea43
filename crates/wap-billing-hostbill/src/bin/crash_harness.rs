//! `wap-billing-hostbill-crash-harness`: the engine's adapter with [`HostBillBilling`] as event and usage handler,
//! pulling from a Usage Service, for the crash test (`tests/crash.rs` kills it with SIGKILL and restarts it) and
//! experiments.
//!
//! ```sh
//! WAP_PASSWORD=... HOSTBILL_API_KEY=... wap-billing-hostbill-crash-harness --url http://127.0.0.1:PORT/ \
//!     --user usagereader --state /tmp/state.db --hostbill http://127.0.0.1:PORT2/ --api-id wap-adapter \
//!     --plan WAPPLAN=10 --addon WAPADDON=20 [--batch 1000] [--single] [--exit-when-caught-up]
//! ```
//!
//! Secrets come from the environment (`WAP_PASSWORD`, `HOSTBILL_API_KEY`), not the command line. Runs with
//! `LeaderElectionMode = SingleInstance`, events and usage (journaled). Exit status 2 means bad arguments, 1 a
//! failure to start or a processor halt.

use std::process::ExitCode;
use std::time::Duration;

use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, Phase};
use wap_billing_hostbill::{HostBillBilling, HostBillBillingConfig, HostBillClient, UsageCalls};

struct Args {
    url: String,
    user: String,
    state: String,
    hostbill: String,
    api_id: String,
    plans: Vec<(String, u64)>,
    addons: Vec<(String, u64)>,
    batch: u32,
    single: bool,
    exit_when_caught_up: bool,
}

fn mapping(v: &str) -> Result<(String, u64), String> {
    let (wap, id) = v.split_once('=').ok_or_else(|| format!("{v:?}: expected WAPID=HOSTBILLID"))?;
    Ok((wap.to_owned(), id.parse().map_err(|_| format!("{v:?}: the HostBill id is not a number"))?))
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut user, mut state, mut hostbill, mut api_id) = (None, None, None, None, None);
    let (mut plans, mut addons, mut batch, mut single, mut exit_when_caught_up) =
        (Vec::new(), Vec::new(), 1000u32, false, false);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--user" => user = Some(value()?),
            "--state" => state = Some(value()?),
            "--hostbill" => hostbill = Some(value()?),
            "--api-id" => api_id = Some(value()?),
            "--plan" => plans.push(mapping(&value()?)?),
            "--addon" => addons.push(mapping(&value()?)?),
            "--batch" => batch = value()?.parse().map_err(|_| "--batch needs a number".to_owned())?,
            "--single" => single = true,
            "--exit-when-caught-up" => exit_when_caught_up = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let need = |v: Option<String>, name: &str| v.ok_or_else(|| format!("{name} is required"));
    Ok(Args {
        url: need(url, "--url")?,
        user: need(user, "--user")?,
        state: need(state, "--state")?,
        hostbill: need(hostbill, "--hostbill")?,
        api_id: need(api_id, "--api-id")?,
        plans,
        addons,
        batch,
        single,
        exit_when_caught_up,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wap-billing-hostbill-crash-harness: {e}");
            return ExitCode::from(2);
        }
    };
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    match run(args, env("WAP_PASSWORD"), env("HOSTBILL_API_KEY")).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wap-billing-hostbill-crash-harness: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args, wap_password: String, api_key: String) -> Result<(), Box<dyn std::error::Error>> {
    let client = HostBillClient::builder()
        .url(&args.hostbill)
        .credentials(&args.api_id, api_key)
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut config = HostBillBillingConfig::new();
    config = config.usage_calls(if args.single { UsageCalls::Single } else { UsageCalls::Bulk });
    for (wap, id) in &args.plans {
        config = config.plan(wap, *id);
    }
    for (wap, id) in &args.addons {
        config = config.addon(wap, *id);
    }
    let engine = EngineConfig::builder()
        .instance_id("hostbill-crash-harness")
        .election_mode(ElectionMode::SingleInstance)
        .subscription_responder_enabled(false)
        .pricing_responder_enabled(false)
        .sync_interval(Duration::from_millis(200))
        .retry_sleep(Duration::from_millis(20))
        .wap_retry_initial(Duration::from_millis(10))
        .wap_retry_max(Duration::from_millis(200))
        .batch_size(args.batch)
        .handler_timeout(Duration::from_secs(5))
        .state_database_url(format!("sqlite://{}", args.state))
        .build()?;
    let adapter = Adapter::builder(engine)
        .usage_service(
            UsageClient::builder().base_url(args.url.as_str()).credentials(args.user.as_str(), wap_password.as_str()),
        )
        .billing_system(HostBillBilling::new(client, config))
        .store_identity_map()
        .billing_system_version("not checked")
        .start()
        .await?;
    if args.exit_when_caught_up {
        let statuses = adapter.wait_caught_up(Duration::from_secs(600)).await?;
        let halted: Vec<_> = statuses.iter().filter_map(|s| s.halt.as_ref()).map(ToString::to_string).collect();
        let reconciled: u64 = statuses.iter().map(|s| s.intents_reconciled).sum();
        adapter.shutdown().await;
        if !halted.is_empty() || statuses.iter().any(|s| s.phase == Phase::Halted) {
            return Err(format!("a processor halted: {}", halted.join("; ")).into());
        }
        println!("caught up; reconciled {reconciled} open intents at start");
        return Ok(());
    }
    adapter.run_until_signal().await;
    Ok(())
}
