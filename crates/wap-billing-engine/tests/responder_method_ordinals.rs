//! The adapter starts its responder with the engine's `MethodNumericOrdinals` (the Usage Service client's), so that
//! an approval call and the feeds read `Method` alike: `"3"` is a delete for both, or for neither.

use std::time::Duration;

use wap_billing_engine::responder::{Decision, FnApprover, Responder, ResponderConfig, ServerConfig};
use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig};
use wap_types::BasicCredentials;

fn responder(config: ResponderConfig) -> Responder<FnApprover<String>> {
    let approver = FnApprover::<String>::new(|_| async { Ok(Decision::Approve) }, |_| async { Ok(Decision::Approve) });
    Responder::new(approver, config)
}

fn responder_config() -> ResponderConfig {
    ResponderConfig::basic(BasicCredentials::new("wapcaller", "Appr0ve-me"))
}

async fn started_with(ordinals: bool, responder: Responder<FnApprover<String>>) -> (Adapter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::builder()
        .instance_id("ordinals")
        .election_mode(ElectionMode::SingleInstance)
        .notification_processor_enabled(false)
        .usage_processor_enabled(false)
        .build()
        .unwrap();
    let client = UsageClient::builder()
        .base_url("http://127.0.0.1:9/")
        .basic_credentials(BasicCredentials::new("usage", "Us4ge-pass"))
        .method_numeric_ordinals(ordinals)
        .timeout(Duration::from_secs(1));
    let store = wap_billing_engine::SqliteStore::open(dir.path().join("state.db")).await.unwrap();
    let adapter = Adapter::builder(config)
        .usage_service(client)
        .state_store(std::sync::Arc::new(store))
        .responder("127.0.0.1:0".parse().unwrap(), responder, ServerConfig::default())
        .start()
        .await
        .unwrap();
    (adapter, dir)
}

#[tokio::test]
async fn the_responder_reads_method_with_the_engines_numeric_ordinals() {
    let on = responder(responder_config());
    assert!(!on.method_numeric_ordinals(), "off as configured");
    let (adapter, _dir) = started_with(true, on.clone()).await;
    assert!(on.method_numeric_ordinals(), "switched on: the engine reads \"3\" as Delete");
    adapter.shutdown().await;

    let off = responder(responder_config().method_numeric_ordinals(true));
    let (adapter, _dir2) = started_with(false, off.clone()).await;
    assert!(!off.method_numeric_ordinals(), "switched off: the engine keeps \"3\" as an unknown verb");
    adapter.shutdown().await;
}
