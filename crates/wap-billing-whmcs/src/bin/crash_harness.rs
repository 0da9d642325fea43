//! `wap-billing-whmcs-crash-harness`: the engine's adapter with [`WhmcsBilling`] as the event handler, pulling from
//! a Usage Service, for the crash test (`tests/crash.rs` kills it with SIGKILL and restarts it) and experiments.
//!
//! ```sh
//! WAP_PASSWORD=... WHMCS_SECRET=... wap-billing-whmcs-crash-harness --url http://127.0.0.1:PORT/ \
//!     --user usagereader --state /tmp/state.db --whmcs http://127.0.0.1:PORT2/ --identifier wap-adapter \
//!     --plan WAPPLAN=1 --addon WAPADDON=5 [--usage [--batch 1000]] [--exit-when-caught-up]
//! ```
//!
//! Secrets come from the environment (`WAP_PASSWORD`, `WHMCS_SECRET`), not the command line. Runs with
//! `LeaderElectionMode = SingleInstance`; event processing only unless `--usage` (usage lines through the engine's
//! intent journal, one `AddBillableItem` each). `WAP_BILLING_FAIL_POINT=after_billing_call@N` parks the N-th
//! journaled (usage) call between WHMCS's commit and the engine's, printing `FAIL POINT after_billing_call
//! <range>`. Exit status 2 means bad arguments, 1 a failure to start or a processor halt.

use std::process::ExitCode;
use std::time::Duration;

use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, Phase};
use wap_billing_whmcs::{Credentials, WhmcsBilling, WhmcsBillingConfig, WhmcsClient};

struct Args {
    url: String,
    user: String,
    state: String,
    whmcs: String,
    identifier: String,
    plans: Vec<(String, u64)>,
    addons: Vec<(String, u64)>,
    exit_when_caught_up: bool,
    usage: bool,
    batch: u32,
}

fn mapping(v: &str) -> Result<(String, u64), String> {
    let (wap, id) = v.split_once('=').ok_or_else(|| format!("{v:?}: expected WAPID=WHMCSID"))?;
    Ok((wap.to_owned(), id.parse().map_err(|_| format!("{v:?}: the WHMCS id is not a number"))?))
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut user, mut state, mut whmcs, mut identifier) = (None, None, None, None, None);
    let (mut plans, mut addons, mut exit_when_caught_up) = (Vec::new(), Vec::new(), false);
    let (mut usage, mut batch) = (false, 1_000);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--user" => user = Some(value()?),
            "--state" => state = Some(value()?),
            "--whmcs" => whmcs = Some(value()?),
            "--identifier" => identifier = Some(value()?),
            "--plan" => plans.push(mapping(&value()?)?),
            "--addon" => addons.push(mapping(&value()?)?),
            "--exit-when-caught-up" => exit_when_caught_up = true,
            "--usage" => usage = true,
            "--batch" => batch = value()?.parse().map_err(|_| "--batch needs a number".to_owned())?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let need = |v: Option<String>, name: &str| v.ok_or_else(|| format!("{name} is required"));
    Ok(Args {
        url: need(url, "--url")?,
        user: need(user, "--user")?,
        state: need(state, "--state")?,
        whmcs: need(whmcs, "--whmcs")?,
        identifier: need(identifier, "--identifier")?,
        plans,
        addons,
        exit_when_caught_up,
        usage,
        batch,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wap-billing-whmcs-crash-harness: {e}");
            return ExitCode::from(2);
        }
    };
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    match run(args, env("WAP_PASSWORD"), env("WHMCS_SECRET")).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wap-billing-whmcs-crash-harness: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args, wap_password: String, whmcs_secret: String) -> Result<(), Box<dyn std::error::Error>> {
    let client = WhmcsClient::builder()
        .url(&args.whmcs)
        .credentials(Credentials::api_credential(&args.identifier, whmcs_secret))
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut config = WhmcsBillingConfig::new("mailin");
    for (wap, id) in &args.plans {
        config = config.plan(wap, *id);
    }
    for (wap, id) in &args.addons {
        config = config.addon(wap, *id);
    }
    let engine = EngineConfig::builder()
        .instance_id("whmcs-crash-harness")
        .election_mode(ElectionMode::SingleInstance)
        .usage_processor_enabled(args.usage)
        .batch_size(args.batch)
        .subscription_responder_enabled(false)
        .pricing_responder_enabled(false)
        .sync_interval(Duration::from_millis(200))
        .retry_sleep(Duration::from_millis(20))
        .wap_retry_initial(Duration::from_millis(10))
        .wap_retry_max(Duration::from_millis(200))
        .state_database_url(format!("sqlite://{}", args.state))
        .build()?;
    let adapter = Adapter::builder(engine)
        .usage_service(
            UsageClient::builder().base_url(args.url.as_str()).credentials(args.user.as_str(), wap_password.as_str()),
        )
        .billing_system(WhmcsBilling::new(client, config))
        .store_identity_map()
        .billing_system_version("not checked")
        .start()
        .await?;
    if args.exit_when_caught_up {
        let statuses = adapter.wait_caught_up(Duration::from_secs(600)).await?;
        let halted = statuses.iter().any(|s| s.phase == Phase::Halted);
        adapter.shutdown().await;
        if halted {
            return Err(format!("a processor halted: {statuses:?}").into());
        }
        println!("caught up");
        return Ok(());
    }
    adapter.run_until_signal().await;
    Ok(())
}
