//! A wait that runs out of time says why: with a wrong Usage Service password against `wap-sim`,
//! `Adapter::wait_caught_up` and `Adapter::sync` return a timeout that carries the 401, the endpoint and the settings
//! to check, and a processor stalled on a standby instance names the instance holding the lease.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{
    Adapter, AdapterError, ElectionMode, EngineConfig, EventHandler, HandlerError, MemorySource, Phase, ProcessorKind,
    UsageBatch, UsageHandler,
};
use wap_sim::{DatasetSpec, WapSim};
use wap_types::BasicCredentials;

/// Accepts everything.
#[derive(Debug)]
struct Accept;

impl EventHandler for Accept {}

#[async_trait]
impl UsageHandler for Accept {
    async fn apply_usage(&self, _: UsageBatch<'_>) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn config(name: &str, dir: &tempfile::TempDir) -> EngineConfig {
    EngineConfig::builder()
        .instance_id(name)
        .election_mode(ElectionMode::SingleInstance)
        .state_database_url(format!("sqlite://{}", dir.path().join("state.db").display()))
        .sync_interval(Duration::from_millis(100))
        .wap_retry_initial(Duration::from_millis(10))
        .wap_retry_max(Duration::from_millis(50))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_usage_service_password_is_named_by_the_timeout_of_wait_caught_up_and_sync() {
    let sim = WapSim::builder().seed(3).dataset(DatasetSpec::with_usage_records(20)).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = BasicCredentials::new(sim.credentials().username, "not-the-password");
    let endpoint = sim.usage_service_url();
    let adapter = Adapter::builder(config("wrong-password", &dir))
        .usage_service(UsageClient::builder().base_url(endpoint.as_str()).basic_credentials(wrong))
        .billing_system(Arc::new(Accept))
        .start()
        .await
        .unwrap();
    // Let a fetch fail first, so the cause is there when the short wait below ends (no timing involved).
    let usage = adapter.processor(ProcessorKind::Usage).unwrap();
    usage.wait_for(|s| s.feeds.iter().any(|f| f.wap_failures > 0)).await;

    let error = adapter.wait_caught_up(Duration::from_millis(300)).await.unwrap_err();
    let text = error.to_string();
    eprintln!("{text}");
    assert!(matches!(error, AdapterError::Timeout { .. }), "{error:?}");
    assert!(text.contains("HTTP 401"), "the status code: {text}");
    assert!(text.contains(&format!("{}:{}", endpoint.host_str().unwrap(), endpoint.port().unwrap())), "{text}");
    assert!(text.contains("UsageServicePassword"), "the setting to check: {text}");
    assert!(!text.contains("not-the-password"), "no credentials in the error: {text}");
    assert!(text.contains("usage processor"), "which processor: {text}");
    assert!(!error.problems().is_empty() && !error.is_retryable(), "{error:?}");
    assert!(error.problems().iter().any(|p| p.contains("HTTP 401")), "{:?}", error.problems());

    let error = adapter.sync(Duration::from_millis(300)).await.unwrap_err();
    assert!(error.to_string().contains("UsageServicePassword"), "{error}");
    adapter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_stalled_on_standby_names_the_instance_holding_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let leased = |name: &str| {
        EngineConfig::builder()
            .instance_id(name)
            .election_mode(ElectionMode::Elect)
            .notification_processor_enabled(false)
            .state_database_url(format!("sqlite://{}", dir.path().join("state.db").display()))
            .sync_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let source = Arc::new(MemorySource::new());
    let leader = Adapter::builder(leased("instance-a"))
        .source(source.clone())
        .usage_handler(Arc::new(Accept))
        .start()
        .await
        .unwrap();
    leader.wait_caught_up(Duration::from_secs(60)).await.unwrap();
    let standby =
        Adapter::builder(leased("instance-b")).source(source).usage_handler(Arc::new(Accept)).start().await.unwrap();
    standby.processor(ProcessorKind::Usage).unwrap().wait_for(|s| s.phase == Phase::Standby).await;

    let error = standby.wait_caught_up(Duration::from_millis(300)).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("usage processor standby"), "{text}");
    assert!(text.contains("held by instance `instance-a`"), "{text}");
    standby.shutdown().await;
    leader.shutdown().await;
}
