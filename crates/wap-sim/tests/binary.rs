//! `wap-sim serve`: starts, prints the URL and credentials, and serves pages.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use url::Url;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_prints_the_url_and_credentials_and_answers() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_wap-sim"))
            .args(["serve", "--bind", "127.0.0.1:0", "--usage-records", "120", "--seed", "4", "--username", "reader"])
            .args(["--password", "Secr3t", "--faults", "503", "--fault-rate", "1.0", "--fault-paths", "/billing/plans"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Try:");
            out.push(line);
            if done {
                break;
            }
        }
        out
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines).await.expect("bounded").unwrap();
    let url_line = lines.iter().find(|l| l.starts_with("Usage Service:")).expect("prints the URL");
    let url = Url::parse(url_line.trim_start_matches("Usage Service:").trim()).unwrap();
    assert!(lines.iter().any(|l| l.contains("reader / Secr3t")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("/usage") && l.contains("120 ids")), "{lines:?}");
    let auth = wap_types::BasicCredentials::new("reader", "Secr3t").header_value();
    let a = common::get_once(&url, "/usage?startId=0&batchSize=50", Some(&auth)).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json().as_array().unwrap().len(), 50);
    let a = common::get_once(&url, "/billing/plans?startId=0&batchSize=50", Some(&auth)).await.unwrap();
    assert_eq!(a.status, 503, "faults from the command line");
    let a = common::get_once(&url, "/usage", None).await.unwrap();
    assert_eq!(a.status, 401);
}

#[test]
fn unknown_fault_kinds_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_wap-sim"))
        .args(["serve", "--bind", "127.0.0.1:0", "--faults", "meltdown"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("meltdown"));
}
