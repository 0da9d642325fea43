//! `wap-billing-crash-harness`: an adapter with the reference ledger (or, with `--billing append-only`, the
//! `AppendOnlyLedger` on the engine's journaled path), pulling from a
//! Usage Service, for the crash-recovery test (`tests/crash_recovery.rs` kills it with SIGKILL and restarts it) and
//! for experiments.
//!
//! ```sh
//! wap-billing-crash-harness --url http://127.0.0.1:PORT/ --user usagereader --password '...' \
//!     --state /tmp/state.db --ledger /tmp/ledger.db [--batch 1000] [--exit-when-caught-up] \
//!     [--billing idempotent|append-only] [--fail-after-commit-every N]
//! ```
//!
//! `WAP_BILLING_FAIL_POINT=after_billing_call@N` in the environment parks the N-th journaled billing call between
//! the billing system's commit and the engine's (printing `FAIL POINT after_billing_call <range>` on stdout), for
//! the test to kill it there.
//!
//! Runs with `LeaderElectionMode = SingleInstance` (a restart takes the lease at once, then waits out the previous
//! holder's 1 s call deadline), a 200 ms sync interval and short retry sleeps. With `--exit-when-caught-up` it stops gracefully once both processors are caught up and
//! prints one summary line; otherwise it runs until killed or Ctrl-C. Exit status 2 means bad arguments, 1 a
//! failure to start or a processor halt.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, Phase, SqliteStore};
use wap_billing_ledger::{AppendOnlyLedger, SqliteLedger};

#[derive(Debug)]
struct Args {
    url: String,
    user: String,
    password: String,
    state: String,
    ledger: String,
    batch: u32,
    exit_when_caught_up: bool,
    append_only: bool,
    fail_after_commit_every: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut user, mut password, mut state, mut ledger) = (None, None, None, None, None);
    let mut batch = 1_000;
    let mut exit_when_caught_up = false;
    let mut append_only = false;
    let mut fail_after_commit_every = 0;
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
            "--billing" => {
                append_only = match value()?.as_str() {
                    "idempotent" => false,
                    "append-only" => true,
                    other => return Err(format!("--billing {other:?}: idempotent or append-only")),
                }
            }
            "--fail-after-commit-every" => {
                fail_after_commit_every =
                    value()?.parse().map_err(|_| "--fail-after-commit-every needs a number".to_owned())?
            }
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
        append_only,
        fail_after_commit_every,
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
        // Calls into a local SQLite ledger take milliseconds; a restart that steals an unreleased lease waits out
        // the previous holder's call deadline, so keep it short.
        .handler_timeout(Duration::from_millis(1_000))
        .build()?;
    let store = Arc::new(SqliteStore::open(&args.state).await?);
    let client = UsageClient::builder().base_url(&args.url).credentials(args.user.clone(), args.password.clone());
    let builder = Adapter::builder(config).usage_service(client).state_store(store);
    if args.append_only {
        let ledger =
            Arc::new(AppendOnlyLedger::open(&args.ledger)?.fail_after_commit_every(args.fail_after_commit_every));
        let adapter =
            builder.billing_system(Arc::clone(&ledger)).billing_system_version(ledger.version()).start().await?;
        return finish(adapter, args.exit_when_caught_up, || {
            let stats = ledger.stats();
            Ok(format!(
                "caught up: append-only ledger covers usage up to {}; this run appended {} usage calls ({} failed \
                 after committing) and {} event lines, answered {} reconciles",
                ledger.usage_progress()?,
                stats.usage_calls,
                stats.failed_after_commit,
                stats.event_calls,
                stats.reconciles
            ))
        })
        .await;
    }
    let ledger = Arc::new(SqliteLedger::open(&args.ledger).await?);
    let adapter = builder.billing_system(Arc::clone(&ledger)).billing_system_version(ledger.version()).start().await?;
    let usage = ledger.usage_count().await?;
    finish(adapter, args.exit_when_caught_up, || {
        let stats = ledger.stats();
        Ok(format!(
            "caught up: {usage} usage records in the ledger at start; this run stored {} and ignored {} repeated, \
             applied {} events and ignored {} repeated",
            stats.usage_records_stored, stats.usage_records_repeated, stats.events_applied, stats.events_repeated
        ))
    })
    .await
}

type Summary<'a> = Box<dyn FnOnce() -> Result<String, Box<dyn std::error::Error>> + 'a>;

async fn finish<'a>(
    adapter: Adapter,
    exit_when_caught_up: bool,
    summary: impl FnOnce() -> Result<String, Box<dyn std::error::Error>> + 'a,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let summary: Summary<'a> = Box::new(summary);
    if !exit_when_caught_up {
        adapter.run_until_signal().await;
        return Ok(ExitCode::SUCCESS);
    }
    let statuses = adapter.wait_caught_up(Duration::from_secs(600)).await?;
    let halted: Vec<_> = statuses.iter().filter_map(|s| s.halt.as_ref()).map(ToString::to_string).collect();
    let reconciled: u64 = statuses.iter().map(|s| s.intents_reconciled).sum();
    adapter.shutdown().await;
    if !halted.is_empty() {
        eprintln!("halted: {}", halted.join("; "));
        return Ok(ExitCode::from(1));
    }
    debug_assert!(statuses.iter().all(|s| s.phase == Phase::CaughtUp));
    println!("{}; reconciled {reconciled} open intents at start", summary()?);
    Ok(ExitCode::SUCCESS)
}
