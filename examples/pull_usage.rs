//! Pull usage records from a WAP Usage Service since a cursor and print totals per subscription.
//!
//! ```sh
//! cargo run --example pull_usage                      # starts a simulated WAP (wap-sim) with 5,000 records
//! cargo run --example pull_usage -- --start 2500 --batch 1000
//! cargo run --example pull_usage -- --url https://wapadmin01:30022/ --user usagereader --password '...' \
//!     [--ca-file wap.pem | --pin <sha256 hex> | --insecure]
//! ```
//!
//! The URL and credentials may also come from `WAP_USAGE_URL`, `WAP_USAGE_USER` and `WAP_USAGE_PASSWORD`.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use wap_billing::sim::{DatasetSpec, WapSim};
use wap_billing::usage_client::{StartId, UsageClient};

#[derive(Debug, Default)]
struct Args {
    url: Option<String>,
    user: Option<String>,
    password: Option<String>,
    start: i64,
    batch: u32,
    records: u64,
    ca_file: Option<String>,
    pin: Option<String>,
    insecure: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: std::env::var("WAP_USAGE_URL").ok(),
        user: std::env::var("WAP_USAGE_USER").ok(),
        password: std::env::var("WAP_USAGE_PASSWORD").ok(),
        batch: 1_000,
        records: 5_000,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = Some(value()?),
            "--user" => a.user = Some(value()?),
            "--password" => a.password = Some(value()?),
            "--start" => a.start = value()?.parse().map_err(|e| format!("--start: {e}"))?,
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--records" => a.records = value()?.parse().map_err(|e| format!("--records: {e}"))?,
            "--ca-file" => a.ca_file = Some(value()?),
            "--pin" => a.pin = Some(value()?),
            "--insecure" => a.insecure = true,
            "-h" | "--help" => {
                return Err("usage: pull_usage [--url URL --user USER --password PASS] [--start ID] [--batch N] \
                            [--records N (simulator)] [--ca-file PEM | --pin SHA256 | --insecure]"
                    .into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_logging("warn");
    let args = parse_args()?;

    // A real Usage Service, or a simulated WAP on loopback.
    let mut sim = None;
    let mut builder = UsageClient::builder().batch_size(args.batch);
    match &args.url {
        Some(url) => {
            let user = args.user.clone().ok_or("--user (or WAP_USAGE_USER) is required with --url")?;
            let password = args.password.clone().ok_or("--password (or WAP_USAGE_PASSWORD) is required with --url")?;
            builder = builder.base_url(url).credentials(user, password);
            if let Some(file) = &args.ca_file {
                builder = builder.ca_file(file);
            }
            if let Some(pin) = &args.pin {
                builder = builder.pinned_certificate_sha256_hex(pin);
            }
            if args.insecure {
                builder = builder.danger_disable_certificate_verification();
            }
        }
        None => {
            let s = WapSim::builder().dataset(DatasetSpec::with_usage_records(args.records)).start().await?;
            println!(
                "started a simulated WAP Usage Service at {} with {} usage records",
                s.usage_service_url(),
                s.usage_count()
            );
            builder = builder.base_url(s.usage_service_url().as_str()).basic_credentials(s.credentials());
            sim = Some(s);
        }
    }
    let client = builder.build()?;

    let cursor = StartId::new(args.start);
    println!("pulling {} from startId {cursor} in batches of {}", client.usage().kind(), client.batch_size());
    let started = Instant::now();
    let mut totals: BTreeMap<String, (u64, BTreeMap<String, f64>)> = BTreeMap::new();
    let mut next_cursor = cursor;
    let mut records = 0u64;
    let mut usage = client.usage().stream_from(cursor);
    while let Some(item) = usage.next().await {
        let item = item?;
        if let Some(gap) = &item.retention_gap {
            eprintln!("warning: {gap}");
        }
        let record = &item.item;
        let (count, meters) = totals.entry(record.subscription_id.to_ascii_lowercase()).or_default();
        *count += 1;
        for (meter, value) in record.resources.iter() {
            if let Ok(v) = value.trim().parse::<f64>() {
                *meters.entry(meter.clone()).or_default() += v;
            }
        }
        records += 1;
        next_cursor = item.next_start;
    }

    for (subscription, (count, meters)) in &totals {
        println!("{subscription}: {count} records");
        for (meter, total) in meters {
            println!("    {meter:<36} {total:>16.2}");
        }
    }
    println!(
        "{records} records from {} subscriptions in {:.2?}; next run: --start {}",
        totals.len(),
        started.elapsed(),
        next_cursor
    );
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    Ok(())
}
