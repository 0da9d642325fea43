//! The `wap-billing` binary run as an operator runs it, against a real `wap-sim` on loopback: validate, run,
//! status, a halt, skip and resume, audit, mappings, export killed and resumed, SIGTERM, and no secret in any
//! output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wap_sim::{DatasetSpec, WapSim};
use wap_types::{StringMap, UsageRecord, WapDateTime};

const USAGE_PASSWORD: &str = "usage-sentinel-7f3a9c";
const RESPONDER_PASSWORD: &str = "responder-sentinel-51be0d";

fn bin() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("wap-billing"));
    cmd.env_remove("WAP_BILLING_CONFIG").env_remove("RUST_LOG").stdin(Stdio::null());
    cmd
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn assert_no_secret(what: &str, output: &str) {
    for secret in [USAGE_PASSWORD, RESPONDER_PASSWORD] {
        assert!(!output.contains(secret), "{what} printed a secret:\n{output}");
    }
}

#[test]
fn the_example_file_validates_once_its_secret_files_exist() {
    let dir = tempfile::tempdir().unwrap();
    let example = bin().args(["config", "example"]).output().unwrap();
    assert!(example.status.success());
    let file = dir.path().join("wap-billing.toml");
    std::fs::write(&file, &example.stdout).unwrap();

    // As shipped, the password files it names do not exist here: validate says so, by key path.
    let out = bin().args(["validate", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("usage_service.password_file: expected a readable file"), "{stderr}");
    assert!(stderr.contains("responder.password_file"), "{stderr}");

    // Environment overrides point them at real files (and the secrets stay out of the output).
    let usage_pw = dir.path().join("usage.pw");
    std::fs::write(&usage_pw, format!("{USAGE_PASSWORD}\n")).unwrap();
    let out = bin()
        .args(["validate", "--config"])
        .arg(&file)
        .env("WAP_BILLING_USAGE_SERVICE__PASSWORD_FILE", &usage_pw)
        .env("WAP_BILLING_RESPONDER__PASSWORD_FILE", "")
        .env("WAP_BILLING_RESPONDER__AUTHENTICATION", "none")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_no_secret("validate", &text(&out));
}

#[test]
fn validate_names_every_problem_by_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        r#"
UsageServiceEndpoint = "ftp://wap.example/"
[usage_service]
username = "UsageClient"
password = "responder-sentinel-51be0d"
batch_size = 20000
[engine]
retry_sleep_ms = 0
lease_ttl_ms = 10
leader_election_mode = "sometimes"
initial_start_ids = { nosuchfeed = 3 }
[responder]
listen = "not an address"
username = "wapcaller"
password = "  "
[billing]
system = "quickbooks"
"#,
    )
    .unwrap();
    let out = bin().args(["validate", "-c"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "usage_service.endpoint",
        "usage_service.batch_size",
        "engine.retry_sleep_ms",
        "engine.lease_ttl_ms",
        "engine.leader_election_mode",
        "engine.initial_start_ids.nosuchfeed",
        "responder.listen",
        "responder.password",
        "billing.system",
    ] {
        assert!(stderr.contains(&format!("error: {path}: expected")), "{path} not reported:\n{stderr}");
    }
    assert_no_secret("validate", &text(&out));

    // A type error and an unknown key are named too.
    std::fs::write(&file, "[engine]\nretry_max_attempts = \"many\"\n").unwrap();
    let out = bin().args(["validate", "-c"]).arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("engine.retry_max_attempts: expected u32"), "{}", text(&out));
    std::fs::write(&file, "[engine]\nretry_max_atempts = 3\n").unwrap();
    let out = bin().args(["validate", "-c"]).arg(&file).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("engine.retry_max_atempts: expected a known key"),
        "{}",
        text(&out)
    );
}

struct Fixture {
    _dir: tempfile::TempDir,
    config: PathBuf,
    ledger: PathBuf,
    admin: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn fixture(sim: &WapSim) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("usage.pw");
    std::fs::write(&pw, format!("{}\n", sim.credentials().password.expose())).unwrap();
    let ledger = dir.path().join("ledger.db");
    let admin = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("wap-billing.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[usage_service]
endpoint = "{endpoint}"
username = "{user}"
password_file = "{pw}"
batch_size = 500
[state]
url = "sqlite://{state}"
[engine]
leader_election_mode = "single-instance"
sync_interval_ms = 200
retry_sleep_ms = 50
retry_max_attempts = 2
lease_ttl_ms = 2000
[responder]
listen = "127.0.0.1:0"
username = "wapcaller"
password_env = "TEST_RESPONDER_PASSWORD"
[admin]
listen = "{admin}"
[billing.ledger]
path = "{ledger}"
[log]
level = "trace"
"#,
            endpoint = sim.usage_service_url(),
            user = sim.credentials().username,
            pw = pw.display(),
            state = dir.path().join("state.db").display(),
            ledger = ledger.display(),
        ),
    )
    .unwrap();
    Fixture { _dir: dir, config, ledger, admin }
}

fn spawn_run(f: &Fixture, log: &Path) -> Child {
    bin()
        .args(["run", "--config"])
        .arg(&f.config)
        .env("TEST_RESPONDER_PASSWORD", RESPONDER_PASSWORD)
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn status(f: &Fixture) -> Value {
    let out = bin().args(["status", "--json", "--config"]).arg(&f.config).output().unwrap();
    assert!(out.status.success(), "status failed: {}", text(&out));
    assert_no_secret("status", &text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn usage_feed(status: &Value) -> &Value {
    status["processors"].as_array().unwrap().iter().find(|p| p["processor"] == "usage").unwrap()
}

fn wait_for(what: &str, f: &Fixture, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(f);
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last status {s:#}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn bad_record(subscription: &str) -> UsageRecord {
    let mut resources = StringMap::new();
    resources.insert("DatabaseCount".into(), "lots".into());
    let now = WapDateTime::now().to_utc();
    UsageRecord {
        start_time: WapDateTime::from_utc(now - Duration::from_secs(3_600)),
        end_time: WapDateTime::from_utc(now),
        provider_name: Some("mysqlservers".into()),
        service_type: Some("Default".into()),
        subscription_id: subscription.to_owned(),
        resources,
        ..Default::default()
    }
}

#[cfg(unix)]
fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -TERM");
}

#[cfg(unix)]
#[test]
fn run_syncs_a_sim_and_operators_skip_resume_and_map() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dataset = DatasetSpec { usage_records: 3_000, ..DatasetSpec::small() };
    let sim = rt.block_on(WapSim::builder().seed(7).dataset(dataset).start()).unwrap();
    let f = fixture(&sim);
    let log = f._dir.path().join("run.log");
    let mut child = spawn_run(&f, &log);

    // run → caught up: every usage record committed.
    let last = *sim.usage_ids().last().unwrap();
    let s = wait_for("the first sync", &f, |s| usage_feed(s)["feeds"][0]["last_event_id"].as_i64() == Some(last));
    // Caught up: WAP holds nothing after the cursor.
    let lag = &usage_feed(&s)["feeds"][0]["lag"];
    assert_eq!((lag["pending"].as_u64(), lag["lag_event_ids"].as_i64()), (Some(0), Some(0)), "{s:#}");
    assert_eq!(lag["newest_seen_event_id"].as_i64(), Some(last), "{s:#}");
    let health = rt.block_on(async { http_get(&f.admin, "/health").await });
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // A record the ledger cannot take halts the usage processor, naming it.
    let sub = sim.subscriptions()[0].subscription_id.clone();
    let bad = sim.append_usage(vec![bad_record(&sub)])[0];
    let s = wait_for("the halt", &f, |s| !usage_feed(s)["halt"].is_null());
    assert_eq!(usage_feed(&s)["halt"]["event_id"].as_i64(), Some(bad), "{s:#}");
    // The lag names what waits behind the halt: the bad record, one id past the cursor, and how old it is.
    let lag = &usage_feed(&s)["feeds"][0]["lag"];
    assert_eq!(lag["pending"].as_u64(), Some(1), "{s:#}");
    assert_eq!(lag["newest_seen_event_id"].as_i64(), Some(bad), "{s:#}");
    assert_eq!(lag["lag_event_ids"].as_i64(), Some(bad - last), "{s:#}");
    assert!(lag["oldest_pending_age_seconds"].as_i64().is_some_and(|a| a < 3_600), "{s:#}");
    let table = bin().args(["status", "--config"]).arg(&f.config).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.contains("usage processor HALTED at usage event"), "{table}");
    // The feed table's usage row (the processor table has one too): FEED CURSOR NEWEST-IN-WAP BEHIND …
    let (last_s, bad_id_s) = (last.to_string(), bad.to_string());
    let feed_row: Vec<&str> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<&str>>())
        .find(|cells| cells.len() > 3 && cells[0] == "usage" && cells[1] == last_s)
        .unwrap_or_else(|| panic!("no usage feed row in {table}"));
    assert_eq!(feed_row[..4], ["usage", last_s.as_str(), bad_id_s.as_str(), "1"], "{table}");

    // skip needs a reason, then moves past it (audited).
    let bad_s = bad.to_string();
    let out =
        bin().args(["skip", "usage", "--event", &bad_s, "--reason", "", "--config"]).arg(&f.config).output().unwrap();
    assert!(!out.status.success());
    assert!(table.contains(&format!("skip usage --event {bad}")), "status shows the command to run: {table}");
    // A stale view (another event named) changes nothing.
    let stale = (bad - 1).to_string();
    let out =
        bin().args(["skip", "usage", "--event", &stale, "--reason", "x", "--config"]).arg(&f.config).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let s = status(&f);
    assert_eq!(usage_feed(&s)["halt"]["event_id"].as_i64(), Some(bad), "still halted on the same event: {s:#}");
    let out = bin()
        .args(["skip", "usage", "--event", &bad_s, "--reason", "meter value not a number", "--actor", "ops-test"])
        .arg("--config")
        .arg(&f.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("event {bad}..={bad}")), "{}", text(&out));
    let good = sim.generate_usage(10);
    wait_for("the sync after the skip", &f, |s| {
        usage_feed(s)["feeds"][0]["last_event_id"].as_i64() == Some(*good.end())
    });

    // resume: a second bad record halts; resume tries it again (and it halts again: the record is still bad).
    let bad2 = sim.append_usage(vec![bad_record(&sub)])[0];
    wait_for("the second halt", &f, |s| usage_feed(s)["halt"]["event_id"].as_i64() == Some(bad2));
    let bad2_s = bad2.to_string();
    let out = bin()
        .args(["resume", "usage", "--event", &bad2_s, "--actor", "ops-test", "--config"])
        .arg(&f.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("event {bad2}")), "{}", text(&out));
    let out = bin().args(["audit", "--json", "--config"]).arg(&f.config).output().unwrap();
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<(String, Option<i64>)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "ops-test")
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["event_id"].as_i64()))
        .collect();
    assert_eq!(actions.len(), 2, "{audit:#}");
    assert_eq!(actions[0].1, Some(bad));
    assert_eq!(actions[1].1, Some(bad2));

    // mappings: set, import, list, export, delete.
    let out =
        bin().args(["mappings", "set", "plan", "plan-a", "product-17", "--config"]).arg(&f.config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let csv = f._dir.path().join("map.csv");
    std::fs::write(&csv, "kind,wap_id,billing_id\naddOn,addon-x,\"addon,17\"\nuser,a@b.test,client-9\n").unwrap();
    let out = bin().args(["mappings", "import"]).arg(&csv).arg("--config").arg(&f.config).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2"), "{}", text(&out));
    let out = bin().args(["mappings", "export", "--config"]).arg(&f.config).output().unwrap();
    let exported = String::from_utf8_lossy(&out.stdout).to_string();
    for line in ["plan,plan-a,product-17", "addOn,addon-x,\"addon,17\"", "user,a@b.test,client-9"] {
        assert!(exported.lines().any(|l| l == line), "{line} missing from {exported}");
    }
    let bad_csv = f._dir.path().join("bad.csv");
    std::fs::write(&bad_csv, "plan,p1,b1\nwidget,p2,b2\n").unwrap();
    let out = bin().args(["mappings", "import"]).arg(&bad_csv).arg("--config").arg(&f.config).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("line 2"), "{}", text(&out));
    let out = bin().args(["mappings", "delete", "plan", "plan-a", "--config"]).arg(&f.config).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted"), "{}", text(&out));
    let out = bin().args(["mappings", "list", "--json", "--config"]).arg(&f.config).output().unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list:#}");

    // The resumed record is still bad: it halts again; skip it too.
    wait_for("the halt after resume", &f, |s| usage_feed(s)["halt"]["event_id"].as_i64() == Some(bad2));
    let out = bin()
        .args(["skip", "usage", "--event", &bad2_s, "--reason", "bad again", "--config"])
        .arg(&f.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // SIGTERM during a sync: a clean stop that releases the leases.
    let more = sim.generate_usage(100_000);
    wait_for("the sync to be under way", &f, |s| {
        usage_feed(s)["feeds"][0]["last_event_id"].as_i64().is_some_and(|id| id >= *more.start())
    });
    sigterm(&child);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "run exited with {exit:?}:\n{}", std::fs::read_to_string(&log).unwrap());
    let s = status(&f);
    for p in s["processors"].as_array().unwrap() {
        assert!(p["leader"].is_null(), "lease still held after SIGTERM: {s:#}");
    }
    let output = std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(log.with_extension("out")).unwrap();
    assert!(output.contains("TRACE") || output.contains("DEBUG"), "the run logged at trace level");
    assert_no_secret("run at trace level", &output);
    let stopped_at = usage_feed(&s)["feeds"][0]["last_event_id"].as_i64().unwrap();
    assert!(stopped_at < *more.end(), "SIGTERM landed during the sync (stopped at {stopped_at} of {})", more.end());

    // State consistent: a second run continues from the committed cursor to the end, no halt, and the ledger
    // holds every record but the two skipped ones.
    let mut child = spawn_run(&f, &f._dir.path().join("run2.log"));
    let s =
        wait_for("the second run", &f, |s| usage_feed(s)["feeds"][0]["last_event_id"].as_i64() == Some(*more.end()));
    assert!(usage_feed(&s)["halt"].is_null(), "{s:#}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let ledger = rt.block_on(wap_billing_ledger::SqliteLedger::open(&f.ledger)).unwrap();
    let held = rt.block_on(ledger.usage_count()).unwrap();
    assert_eq!(held as usize, sim.usage_ids().len() - 2, "stopped at {stopped_at} of {}", more.end());
    rt.block_on(sim.shutdown());
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[cfg(unix)]
#[test]
fn export_killed_halfway_and_resumed_has_every_record_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dataset = DatasetSpec { usage_records: 40_000, ..DatasetSpec::small() };
    let sim = rt.block_on(WapSim::builder().seed(11).dataset(dataset).start()).unwrap();
    let f = fixture(&sim);
    let out_file = f._dir.path().join("usage.jsonl");
    let cursor = f._dir.path().join("usage.cursor");
    let export = || {
        let mut c = bin();
        c.args(["export", "usage", "--format", "jsonl", "--config"])
            .arg(&f.config)
            .arg("--output")
            .arg(&out_file)
            .arg("--cursor-file")
            .arg(&cursor);
        c
    };
    // Kill it several times once it has written something, at whatever point it is.
    let mut kills = 0;
    for round in 0..4 {
        let mut child = export().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let start = std::fs::metadata(&out_file).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&out_file).map(|m| m.len()).unwrap_or(0) <= start + 200_000 * (round + 1) {
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let _ = child.wait();
    }
    assert!(kills >= 2, "the export was killed mid-way at least twice ({kills})");
    let out = export().output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Piped (not a terminal): no progress bar, no summary, nothing on stderr.
    assert!(out.stderr.is_empty(), "quiet when piped, got: {}", String::from_utf8_lossy(&out.stderr));
    let text_out = std::fs::read_to_string(&out_file).unwrap();
    let ids: Vec<i64> =
        text_out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["EventId"].as_i64().unwrap()).collect();
    assert_eq!(ids, sim.usage_ids(), "every record exactly once, in order");

    // CSV: one row per meter, header once.
    let csv = f._dir.path().join("usage.csv");
    let out = bin()
        .args(["export", "usage", "--format", "csv", "--limit", "5", "--config"])
        .arg(&f.config)
        .arg("-o")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(
        csv.starts_with("EventId,SubscriptionId,ProviderName,ServiceType,ResourceId,StartTime,EndTime,Meter,Value\n")
    );
    let first_ids: std::collections::BTreeSet<&str> =
        csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(first_ids.len(), 5, "{csv}");

    // A slice that ends at a known id (the progress bar's ETA case), to stdout through a pipe.
    let until = sim.usage_ids()[1_234];
    let out =
        bin().args(["export", "usage", "--until-id", &until.to_string(), "--config"]).arg(&f.config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stderr.is_empty(), "quiet when piped: {}", String::from_utf8_lossy(&out.stderr));
    let ids: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["EventId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, sim.usage_ids()[..=1_234], "every record up to --until-id, none after");
    rt.block_on(sim.shutdown());
}

#[test]
fn a_wrong_usage_service_password_is_one_clear_line() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(WapSim::builder().seed(3).dataset(DatasetSpec::small()).start()).unwrap();
    let f = fixture(&sim);
    let out = bin()
        .args(["run", "--config"])
        .arg(&f.config)
        .env("TEST_RESPONDER_PASSWORD", RESPONDER_PASSWORD)
        .env("WAP_BILLING_USAGE_SERVICE__PASSWORD_FILE", "")
        .env("WAP_BILLING_USAGE_SERVICE__PASSWORD", USAGE_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(
        line.contains("HTTP 401") && line.contains("check usage_service.username / usage_service.password"),
        "{stderr}"
    );
    assert_no_secret("run", &text(&out));
    rt.block_on(sim.shutdown());
}

#[test]
fn demo_runs_the_whole_flow() {
    let out = bin().arg("demo").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("buys \"") && stdout.contains("APPROVED") && stdout.contains("DENIED"), "{stdout}");
    assert!(stdout.contains("Total"), "an invoice is printed: {stdout}");
}

/// A state database whose usage processor is halted in doubt on an open intent, as the journaled path leaves it
/// when a billing call's outcome is unknown.
fn in_doubt_state(dir: &Path) -> PathBuf {
    use wap_billing_engine::store::{Fence, HaltReason, HaltStatus, ProcessorKind};
    use wap_billing_engine::Intent;
    let state = dir.join("state.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = wap_billing_engine::store::open(&format!("sqlite://{}", state.display())).await.unwrap();
        let lease = store
            .try_acquire_lease(ProcessorKind::Usage, "crashed-instance", Duration::from_secs(60), false)
            .await
            .unwrap()
            .unwrap();
        let fence =
            Fence { processor: ProcessorKind::Usage, holder: "crashed-instance".into(), generation: lease.generation };
        let now = chrono::Utc::now();
        let intent = Intent {
            processor: ProcessorKind::Usage,
            feed: wap_types::FeedKind::Usage,
            first_event_id: 13_278,
            last_event_id: 14_302,
            records: 1_025,
            operation: "usage_lines".into(),
            token: Intent::default_token(wap_types::FeedKind::Usage, 13_278, 14_302),
            generation: lease.generation,
            opened_at: now,
        };
        store.open_intent(&fence, &intent).await.unwrap();
        let halt = HaltStatus {
            processor: ProcessorKind::Usage,
            feed: wap_types::FeedKind::Usage,
            event_id: 13_278,
            last_event_id: 14_302,
            reason: HaltReason::InDoubt,
            error: "in doubt: the billing API cannot be searched".into(),
            attempts: 0,
            halted_at: now,
        };
        store.set_halt(&fence, &halt).await.unwrap();
        store.release_lease(&fence).await.unwrap();
    });
    state
}

#[test]
fn status_shows_an_in_doubt_intent_and_resolve_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = in_doubt_state(dir.path());
    let config = dir.path().join("ops.toml");
    // Operator commands need only [state]: no Usage Service settings here, so no lag probe either.
    std::fs::write(&config, format!("[state]\nurl = \"sqlite://{}\"\n", state.display())).unwrap();

    let out = bin().args(["status", "--json", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["wap_probed"], false, "{s:#}");
    let usage = usage_feed(&s);
    assert_eq!(usage["in_doubt"], true, "{s:#}");
    assert_eq!(usage["halt"]["reason"], "in_doubt");
    assert_eq!(usage["halt"]["error"], "in doubt: the billing API cannot be searched");
    assert_eq!(usage["open_intent"]["token"], "wap-usage-13278-14302");
    assert_eq!(usage["open_intent"]["records"], 1_025);
    assert!(usage["leader"].is_null() && usage["lease_remaining_ms"].is_null(), "released lease: {usage:#}");
    let notification = &s["processors"][0];
    assert_eq!((notification["in_doubt"].as_bool(), notification["open_intent"].is_null()), (Some(false), true));

    let out = bin().args(["status", "--config"]).arg(&config).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.contains("usage processor IN DOUBT at usage event 13278..=14302"), "{table}");
    assert!(table.contains("open intent wap-usage-13278-14302: usage_lines of usage 13278..=14302"), "{table}");
    assert!(table.contains("wap-billing resolve usage --as applied|send-again|skip"), "{table}");
    assert!(table.contains("lag behind WAP not probed"), "{table}");

    // resolve: a reason is required, an unknown resolution is refused, then it clears the halt and the intent.
    let out =
        bin().args(["resolve", "usage", "--as", "skip", "--reason", " ", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let out =
        bin().args(["resolve", "usage", "--as", "maybe", "--reason", "x", "--config"]).arg(&config).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown resolution"), "{}", text(&out));
    let out = bin()
        .args(["resolve", "usage", "--as", "send-again", "--reason", "not on any invoice", "--actor", "ana"])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("intent wap-usage-13278-14302 as send_again"),
        "{}",
        text(&out)
    );
    let out = bin().args(["status", "--json", "--config"]).arg(&config).output().unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let usage = usage_feed(&s);
    assert!(usage["halt"].is_null() && usage["open_intent"].is_null() && usage["in_doubt"] == false, "{s:#}");
    let out = bin().args(["audit", "--json", "--config"]).arg(&config).output().unwrap();
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "ana" && e["detail"].as_str().unwrap_or("").contains("not on any invoice")),
        "{audit:#}"
    );
    // A second resolve finds nothing in doubt.
    let out = bin()
        .args(["resolve", "usage", "--as", "skip", "--reason", "again", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
}
