//! Writing a handler with nothing but this crate: `wap_types` and `async_trait` come re-exported, and `?` works on
//! the errors a handler meets (`io::Error`, a boxed error, a store error, a message), each becoming a failed
//! attempt whose text ends up in the halt.

mod common;

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use wap_billing_engine::wap_types::{FeedKind, Plan, UsageRecord};
use wap_billing_engine::{
    async_trait, EntityChange, EventContext, EventHandler, HaltReason, HandlerError, MemorySource, Phase,
    ProcessorKind, UsageBatch, UsageHandler,
};

const LONG: Duration = Duration::from_secs(30 * 86_400);

/// Reads the plan's price list from a file: `?` on the `io::Error`.
#[derive(Debug)]
struct PriceFileBilling {
    dir: PathBuf,
    applied: Mutex<Vec<String>>,
}

#[async_trait]
impl EventHandler for PriceFileBilling {
    async fn plan(&self, _: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        let plan: &Plan = change.entity();
        let prices = std::fs::read_to_string(self.dir.join(format!("{}.prices", plan.id)))?;
        self.applied.lock().unwrap().push(format!("{}={}", plan.id, prices.trim()));
        Ok(())
    }
}

/// A billing client that returns boxed errors: `?` on them.
#[derive(Debug)]
struct BoxedErrorBilling;

fn meter_client(record: &UsageRecord) -> Result<(), Box<dyn StdError + Send + Sync>> {
    Err(format!("meter endpoint refused subscription {}", record.subscription_id).into())
}

#[async_trait]
impl UsageHandler for BoxedErrorBilling {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        for record in batch.records {
            meter_client(record)?;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn question_mark_on_an_io_error_in_a_handler_fails_the_attempt_and_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let billing = Arc::new(PriceFileBilling { dir: dir.path().to_owned(), applied: Mutex::new(Vec::new()) });
    let cfg = config().build().unwrap();
    let running = spawn_events(&cfg, &source, &store, billing.clone());

    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.expect("halted");
    assert_eq!((halt.feed, halt.event_id, halt.reason.clone()), (FeedKind::Plans, 1, HaltReason::HandlerFailed));
    let missing = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
    let os_text = std::fs::read_to_string(dir.path().join("nothing-here")).unwrap_err().to_string();
    assert!(halt.error.contains(&os_text) || halt.error.contains(&missing), "the io error's text: {}", halt.error);
    assert!(billing.applied.lock().unwrap().is_empty());

    // The file appears; an operator resumes; the same handler now applies the event.
    let plan_id = "plan-1"; // common::ack_plan(1)
    std::fs::write(dir.path().join(format!("{plan_id}.prices")), "gold: 10 USD\n").unwrap();
    running.handle.resume("test").await.unwrap();
    wait_status(&running.handle, LONG, "applied", |s| s.applied() == 1).await;
    assert_eq!(*billing.applied.lock().unwrap(), [format!("{plan_id}=gold: 10 USD")]);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn question_mark_on_a_boxed_error_in_a_usage_handler_fails_the_attempt_and_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(usage(1, "sub-7"));
    let cfg = config().build().unwrap();
    let running = spawn_usage(&cfg, &source, &store, Arc::new(BoxedErrorBilling));
    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    assert_eq!(status.processor, ProcessorKind::Usage);
    let halt = status.halt.expect("halted");
    assert!(halt.error.contains("meter endpoint refused subscription sub-7"), "{}", halt.error);
    running.stop().await;
}

#[test]
fn handler_errors_convert_from_common_errors() {
    fn io() -> Result<(), HandlerError> {
        Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "ledger.csv: permission denied"))?
    }
    fn json() -> Result<(), HandlerError> {
        serde_json::from_str::<serde_json::Value>("{oops")?;
        Ok(())
    }
    fn message() -> Result<(), HandlerError> {
        Err("customer 42 is closed")?
    }
    for (result, text) in [(io(), "permission denied"), (json(), "key must be a string"), (message(), "closed")] {
        let e = result.unwrap_err();
        assert!(!e.is_dependency_not_ready(), "{e:?}");
        assert!(e.to_string().contains(text), "{e}");
    }
    assert!(io().unwrap_err().source().is_some(), "the io::Error is kept as the source");
}

/// The renamed error types keep their former names as deprecated aliases, so code written against them compiles.
#[test]
#[allow(deprecated)]
fn former_error_names_still_compile() {
    fn engine(e: wap_billing_engine::ConfigError) -> wap_billing_engine::EngineConfigError {
        e
    }
    let e = wap_billing_engine::EngineConfig::builder().sync_interval(Duration::ZERO).build().unwrap_err();
    assert!(engine(e).to_string().contains("SyncIntervalMilliseconds"));
    // Any error of the crate converts into its one top-level error.
    let top: wap_billing_engine::Error = HandlerError::failed("x").into();
    assert!(top.is_retryable());
    let top: wap_billing_engine::Error =
        wap_billing_engine::EngineConfig::builder().sync_interval(Duration::ZERO).build().unwrap_err().into();
    assert!(!top.is_retryable());
}
