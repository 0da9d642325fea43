//! `wap-billing-crash-harness`: an adapter with the reference ledger, pulling from a Usage Service, for the
//! crash-recovery test (`tests/crash_recovery.rs` kills it with SIGKILL and restarts it) and for experiments.
//!
//! ```sh
//! wap-billing-crash-harness --url http://127.0.0.1:PORT/ --user usagereader --password '...' \
//!     --state /tmp/state.db --ledger /tmp/ledger.db [--batch 1000] [--exit-when-caught-up]
//! ```
//!
//! Runs with `LeaderElectionMode = SingleInstance` (a restart takes the lease at once), a 200 ms sync interval and
//! short retry sleeps. With `--exit-when-caught-up` it stops gracefully once both processors are caught up and
//! prints one summary line; otherwise it runs until killed or Ctrl-C. Exit status 2 means bad arguments, 1 a
//! failure to start or a processor halt.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, Phase, SqliteStore};
use wap_billing_ledger::SqliteLedger;

#[derive(Debug)]
struct Args {
    url: String,
    user: String,
    password: String,
    state: String,
    ledger: String,
    batch: u32,
    exit_when_caught_up: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut user, mut password, mut state, mut ledger) = (None, None, None, None, None);
    let mut batch = 1_000;
    let mut exit_when_caught_up = false;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--user" => user = Some(value()?),
            "--password" => password = Some(value()?),
            "--state" => state = Some(value()?),
            "--ledger" => ledger = Some(value()?),
            "--batch" => batch = value()?.parse().map_err(|_| "--batch needs a number".to_owned())?,
            "--exit-when-caught-up" => exit_when_caught_up = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let need = |v: Option<String>, name: &str| v.ok_or_else(|| format!("{name} is required"));
    Ok(Args {
        url: need(url, "--url")?,
        user: need(user, "--user")?,
        password: need(password, "--password")?,
        state: need(state, "--state")?,
        ledger: need(ledger, "--ledger")?,
        batch,
        exit_when_caught_up,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wap-billing-crash-harness: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wap-billing-crash-harness: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = EngineConfig::builder()
        .instance_id(format!("crash-harness-{}", std::process::id()))
        .election_mode(ElectionMode::SingleInstance)
        .sync_interval(Duration::from_millis(200))
        .retry_sleep(Duration::from_millis(100))
        .wap_retry_initial(Duration::from_millis(50))
        .wap_retry_max(Duration::from_secs(2))
        .batch_size(args.batch)
        .build()?;
    let ledger = Arc::new(SqliteLedger::open(&args.ledger).await?);
    let store = Arc::new(SqliteStore::open(&args.state).await?);
    let client = UsageClient::builder().base_url(&args.url).credentials(args.user, args.password);
    let adapter = Adapter::builder(config)
        .usage_service(client)
        .state_store(store)
        .billing_system(Arc::clone(&ledger))
        .billing_system_version(ledger.version())
        .start()
        .await?;
    if !args.exit_when_caught_up {
        adapter.run_until_signal().await;
        return Ok(ExitCode::SUCCESS);
    }
    let statuses = adapter.wait_caught_up(Duration::from_secs(600)).await?;
    let halted: Vec<_> = statuses.iter().filter_map(|s| s.halt.as_ref()).map(ToString::to_string).collect();
    let usage = ledger.usage_count().await?;
    let stats = ledger.stats();
    adapter.shutdown().await;
    if !halted.is_empty() {
        eprintln!("halted: {}", halted.join("; "));
        return Ok(ExitCode::from(1));
    }
    debug_assert!(statuses.iter().all(|s| s.phase == Phase::CaughtUp));
    println!(
        "caught up: {usage} usage records in the ledger; this run stored {} and ignored {} repeated, applied {} \
         events and ignored {} repeated",
        stats.usage_records_stored, stats.usage_records_repeated, stats.events_applied, stats.events_repeated
    );
    Ok(ExitCode::SUCCESS)
}
