//! Every public config, builder and error type of the crates below that can hold a secret, built with sentinel
//! secrets (passwords, bearer tokens, URLs with passwords): no `Debug` or `Display` rendering, and no error
//! `source()` chain, contains them; the billing engine's config, builder, URL and store errors too, including every
//! log line of a failed start captured at `trace` level.

use std::error::Error as StdError;
use std::fmt::Debug;

use wap_resource_provider::{EndpointAuth, RegistrationBuilder, RpServer, StaticBearerToken, UsageLedger};
use wap_responder::{ResponderConfig, ServerConfig};
use wap_types::{BasicCredentials, Secret};
use wap_usage_client::UsageClientBuilder;

const PASSWORD: &str = "Sentinel-Pa55word";
const TOKEN: &str = "Sentinel-Bearer-T0ken";
const URL_PASSWORD: &str = "Sentinel-Url-Pa55";

fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, TOKEN, URL_PASSWORD] {
        assert!(!text.contains(secret), "{what} shows a secret: {text}");
    }
}

fn check_debug(what: &str, value: &impl Debug) {
    assert_clean(what, &format!("{value:?}"));
    assert_clean(what, &format!("{value:#?}"));
}

fn check_error(what: &str, error: &(dyn StdError + 'static)) {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        assert_clean(what, &e.to_string());
        assert_clean(what, &format!("{e:?}"));
        current = e.source();
    }
}

#[test]
fn wap_types_secrets_are_redacted() {
    check_debug("Secret", &Secret::from(PASSWORD));
    check_debug("BasicCredentials", &BasicCredentials::new("user", PASSWORD));
}

#[test]
fn responder_configs_are_redacted() {
    check_debug("ResponderConfig", &ResponderConfig::basic(BasicCredentials::new("user", PASSWORD)));
    check_debug("ServerConfig", &ServerConfig::default());
}

#[test]
fn resource_provider_configs_builders_and_errors_are_redacted() {
    let basic = EndpointAuth::basic(BasicCredentials::new("rpadmin", PASSWORD));
    let bearer = EndpointAuth::none().with_bearer(StaticBearerToken::new(TOKEN));
    check_debug("EndpointAuth::basic", &basic);
    check_debug("EndpointAuth::bearer", &bearer);
    let server = RpServer::builder("backup").usage("/", basic.clone(), UsageLedger::in_memory());
    check_debug("RpServer", &server);
    let registration = RegistrationBuilder::new("backup")
        .admin_endpoint(format!("https://rp:{URL_PASSWORD}@rp.example:30010/admin"), &basic)
        .usage_endpoint("https://rp.example:30010/", &bearer)
        .notification_endpoint("https://rp.example:30010/", &basic);
    check_debug("RegistrationBuilder", &registration);
    let error = registration.build().expect_err("a URL with credentials is refused");
    check_error("RegistrationError", &error);
    let valid = RegistrationBuilder::new("backup")
        .admin_endpoint("https://rp.example:30010/admin", &basic)
        .usage_endpoint("https://rp.example:30010/", &basic)
        .notification_endpoint("https://rp.example:30010/", &basic)
        .build()
        .expect("a valid registration");
    check_debug("Registration", &valid);
}

#[test]
fn usage_client_builders_and_errors_are_redacted() {
    let builder = UsageClientBuilder::new()
        .base_url(format!("https://reader:{URL_PASSWORD}@wap.example:30022/"))
        .credentials("usagereader", PASSWORD);
    check_debug("UsageClientBuilder", &builder);
    match builder.build() {
        Ok(client) => check_debug("UsageClient", &client),
        Err(e) => check_error("wap_usage_client::Error", &e),
    }
    let bad = UsageClientBuilder::new()
        .base_url(format!("ftp://reader:{URL_PASSWORD}@wap.example/"))
        .credentials("u", PASSWORD);
    match bad.build() {
        Ok(client) => check_debug("UsageClient", &client),
        Err(e) => check_error("wap_usage_client::Error", &e),
    }
}

#[test]
fn simulator_builder_is_redacted() {
    check_debug("SimBuilder", &wap_sim::WapSim::builder().credentials("usagereader", PASSWORD));
}

/// Log lines captured by a `trace`-level subscriber.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn engine_configs_builders_errors_and_trace_logs_are_redacted() {
    use wap_billing_engine::store::StateDatabaseUrl;
    use wap_billing_engine::{Adapter, AdminConfig, EngineConfig};

    // A password with an unencoded `/`, and one in the query string.
    let urls = [
        format!("postgres://billing:{URL_PASSWORD}@127.0.0.1:1/state?connect_timeout=1"),
        format!("postgres://billing:{URL_PASSWORD}/x@127.0.0.1:1/state?connect_timeout=1"),
        format!("postgresql://127.0.0.1:1/state?user=billing&password={URL_PASSWORD}&connect_timeout=1"),
    ];
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        for url in &urls {
            check_debug("redact_url", &wap_billing_engine::store::redact_url(url));
            assert_clean("redact_url", &wap_billing_engine::store::redact_url(url));
            check_debug("StateDatabaseUrl", &StateDatabaseUrl::parse(url).unwrap());
            let config = EngineConfig::builder()
                .state_database_url(url.clone())
                .notification_processor_enabled(false)
                .usage_processor_enabled(false)
                .build()
                .unwrap();
            check_debug("EngineConfig", &config);
            let builder = Adapter::builder(config.clone())
                .admin_credentials(BasicCredentials::new("operator", PASSWORD))
                .admin_config(AdminConfig::default());
            check_debug("AdapterBuilder", &builder);
            runtime.block_on(async {
                match builder.start().await {
                    Ok(_) => panic!("nothing listens on port 1"),
                    Err(e) => check_error("AdapterError", &e),
                }
                match wap_billing_engine::store::open(url).await {
                    Ok(_) => panic!("nothing listens on port 1"),
                    Err(e) => check_error("StoreError", &e),
                }
                let tls = format!("{url}&sslmode=verify-full");
                match wap_billing_engine::store::open_with_ca_file(&tls, Some(std::path::Path::new("/nonexistent.pem")))
                    .await
                {
                    Ok(_) => panic!("no CA file"),
                    Err(e) => check_error("StoreError (TLS)", &e),
                }
            });
        }
        // A start that succeeds (SQLite) with admin credentials logs its settings too.
        runtime.block_on(async {
            let config = EngineConfig::builder()
                .state_database_url("sqlite::memory:")
                .notification_processor_enabled(false)
                .usage_processor_enabled(false)
                .build()
                .unwrap();
            let adapter = Adapter::builder(config)
                .admin("127.0.0.1:0".parse().unwrap())
                .admin_credentials(BasicCredentials::new("operator", PASSWORD))
                .start()
                .await
                .unwrap();
            check_debug("Adapter", &adapter);
            check_debug("AdminService", &adapter.admin_service());
            adapter.shutdown().await;
        });
    });
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("adapter started"), "the run was logged: {logs}");
    assert_clean("trace-level logs", &logs);
}
