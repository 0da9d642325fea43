//! `wap-sim serve`: runs a simulated Windows Azure Pack on this machine until Ctrl-C and prints what to point a
//! client or billing adapter at.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wap_sim::{DatasetSpec, FaultKind, FaultPlan, LiveConfig, WapSim};

#[derive(Debug, Parser)]
#[command(
    name = "wap-sim",
    version,
    about = "A simulated Windows Azure Pack (Usage Service, approval caller, collector)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the simulated Usage Service and keep it running until Ctrl-C.
    Serve(Serve),
}

#[derive(Debug, clap::Args)]
struct Serve {
    /// Address to listen on (WAP's Usage Service uses port 30022).
    #[arg(long, default_value = "127.0.0.1:30022")]
    bind: SocketAddr,
    /// User name the Usage Service accepts.
    #[arg(long, default_value = wap_sim::DEFAULT_USERNAME)]
    username: String,
    /// Password the Usage Service accepts.
    #[arg(long, default_value = wap_sim::DEFAULT_PASSWORD)]
    password: String,
    /// Seed of the generated data and faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Usage records to generate.
    #[arg(long, default_value_t = 1000)]
    usage_records: u64,
    /// Plans to generate.
    #[arg(long, default_value_t = 4)]
    plans: usize,
    /// Add-ons to generate.
    #[arg(long, default_value_t = 3)]
    add_ons: usize,
    /// Subscriptions to generate.
    #[arg(long, default_value_t = 16)]
    subscriptions: usize,
    /// Load the data from this directory of JSON pages instead of generating it.
    #[arg(long)]
    load_dir: Option<PathBuf>,
    /// `MaximumBatchSize`: the most records one page holds.
    #[arg(long, default_value_t = 10_000)]
    max_batch_size: u32,
    /// Serve HTTPS with a self-signed certificate generated at start.
    #[arg(long)]
    tls: bool,
    /// Live mode: usage records added per second (0 = off).
    #[arg(long, default_value_t = 0)]
    live_usage_per_second: u64,
    /// Live mode: catalogue events added per second.
    #[arg(long, default_value_t = 0)]
    live_events_per_second: u32,
    /// Fault kinds to inject, comma-separated: 500, 503, reset, truncate, stall, delay:<ms>.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Share of requests that get a fault (0.0–1.0).
    #[arg(long, default_value_t = 0.1)]
    fault_rate: f64,
    /// Only these paths get faults (comma-separated, e.g. /usage,/billing/plans).
    #[arg(long, value_delimiter = ',')]
    fault_paths: Vec<String>,
}

#[tokio::main]
async fn main() {
    let Cli { command: Command::Serve(args) } = Cli::parse();
    if let Err(e) = serve(args).await {
        eprintln!("wap-sim: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Serve) -> Result<(), Box<dyn std::error::Error>> {
    let mut kinds = Vec::new();
    for f in &args.faults {
        kinds.push(FaultKind::parse(f).ok_or_else(|| format!("unknown fault kind {f:?}"))?);
    }
    let mut faults = FaultPlan::none();
    if !kinds.is_empty() {
        faults = FaultPlan::seeded(args.seed).rate(args.fault_rate).kinds(&kinds);
        if !args.fault_paths.is_empty() {
            let paths: Vec<&str> = args.fault_paths.iter().map(String::as_str).collect();
            faults = faults.only_paths(&paths);
        }
    }
    let dataset = DatasetSpec {
        plans: args.plans,
        add_ons: args.add_ons,
        subscriptions: args.subscriptions,
        ..DatasetSpec::with_usage_records(args.usage_records)
    };
    let mut builder = WapSim::builder()
        .bind(args.bind)
        .credentials(args.username.clone(), args.password.clone())
        .seed(args.seed)
        .dataset(dataset)
        .max_batch_size(args.max_batch_size)
        .tls(args.tls)
        .faults(faults)
        .on_progress(|done, total| {
            if total >= 1_000_000 {
                eprintln!("generating usage records: {done} / {total}");
            }
        });
    if let Some(dir) = &args.load_dir {
        builder = builder.load_json_dir(dir);
    }
    eprintln!("wap-sim: preparing data ...");
    let sim = builder.start().await?;
    let url = sim.usage_service_url();
    println!("Usage Service:  {url}");
    for feed in wap_types::FeedKind::ALL {
        let count =
            if feed == wap_types::FeedKind::Usage { sim.usage_count() } else { sim.event_ids(feed).len() as u64 };
        println!("  {:<28} {count} ids", feed.path());
    }
    println!("Credentials:    {} / {}", args.username, args.password);
    println!("Authorization:  {}", sim.credentials().header_value());
    if let Some(sha) = sim.tls_certificate_sha256() {
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        println!("TLS certificate SHA-256 (pin): {hex}");
        if let Some(pem) = sim.tls_certificate_pem() {
            println!("{pem}");
        }
    }
    println!("Try:            curl -s -u {}:{} '{}usage?startId=0&batchSize=5'", args.username, args.password, url);
    if args.live_usage_per_second > 0 || args.live_events_per_second > 0 {
        sim.start_live(LiveConfig::new(
            Duration::from_secs(1),
            args.live_usage_per_second,
            args.live_events_per_second,
        ));
        println!("Live mode:      {} records/s, {} events/s", args.live_usage_per_second, args.live_events_per_second);
    }
    tokio::signal::ctrl_c().await?;
    let stats = sim.fault_stats();
    eprintln!("wap-sim: stopping ({} requests served, {} faults injected)", sim.request_log().len(), stats.total());
    sim.shutdown().await;
    Ok(())
}
