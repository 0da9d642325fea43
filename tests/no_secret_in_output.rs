//! Every public config, builder and error type of the crates below that can hold a secret, built with sentinel
//! secrets (passwords, bearer tokens, URLs with passwords): no `Debug` or `Display` rendering, and no error
//! `source()` chain, contains them. (The billing engine's types are checked in its own crate.)

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
