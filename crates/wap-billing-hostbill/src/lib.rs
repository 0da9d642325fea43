#![doc = include_str!("../README.md")]

mod billing;
mod client;
#[cfg(feature = "double")]
pub mod double;
mod error;
mod pricing;
mod types;
mod version;

pub use billing::{AddonRemoval, HostBillBilling, HostBillBillingConfig, UsageCalls};
pub use client::{HostBillClient, HostBillClientBuilder};
pub use error::{classify_messages, Error, ErrorKind};
pub use pricing::{HostBillPricing, HostBillPricingConfig, PriceCacheStatus};
pub use types::{Account, AccountAddon, Client, MeteredValue, NewClient, NewUsage, Priced, CYCLES};
pub use version::{check_version, version_matches, VersionCheck, VersionError};
pub use wap_billing_engine::billing_http::fault::{Fault, FaultKind};
pub use wap_billing_engine::billing_http::TransportFailure;
pub use wap_types::Secret;
