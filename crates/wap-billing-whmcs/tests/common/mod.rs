//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use wap_billing_whmcs::double::{WhmcsDouble, WhmcsDoubleBuilder};
use wap_billing_whmcs::{Credentials, WhmcsClient};

pub const IDENTIFIER: &str = "wap-adapter";
pub const SECRET: &str = "api-secret-1";

/// A double with the products and add-on an administrator would prepare, and one API credential.
pub fn prepared() -> WhmcsDoubleBuilder {
    WhmcsDouble::builder()
        .api_credential(IDENTIFIER, SECRET)
        .product(1, 1, "WAP Gold")
        .product(2, 1, "WAP Silver")
        .addon_definition(5, "Extra IPs")
        .custom_field(9, 1, "WAP Subscription ID")
}

pub fn client(double: &WhmcsDouble) -> WhmcsClient {
    WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::api_credential(IDENTIFIER, SECRET))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}
