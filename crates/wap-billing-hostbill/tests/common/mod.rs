//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use wap_billing_hostbill::double::{HostBillDouble, HostBillDoubleBuilder};
use wap_billing_hostbill::HostBillClient;

pub const API_ID: &str = "wap-adapter";
pub const API_KEY: &str = "hb-key-S3NTINEL";

/// A double with the catalogue an administrator would prepare, and one API key.
pub fn prepared() -> HostBillDoubleBuilder {
    HostBillDouble::builder()
        .api_key(API_ID, API_KEY)
        .order_page(1, "Windows Azure Pack")
        .product(10, 1, "WAP Gold", "25.00")
        .product_price(10, "a", "250.00", "10.00")
        .product(11, 1, "WAP Silver", "12.50")
        .addon(20, "Extra IPs", "4.00")
}

pub fn client(double: &HostBillDouble) -> HostBillClient {
    client_with_timeout(double, Duration::from_secs(5))
}

pub fn client_with_timeout(double: &HostBillDouble, timeout: Duration) -> HostBillClient {
    HostBillClient::builder().url(double.url()).credentials(API_ID, API_KEY).timeout(timeout).build().unwrap()
}
