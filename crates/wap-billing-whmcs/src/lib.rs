#![doc = include_str!("../README.md")]

mod billing;
mod client;
mod credentials;
#[cfg(feature = "double")]
pub mod double;
mod error;
mod md5;
mod php;
mod types;
mod usage;
mod version;
mod wire;

pub use billing::{WhmcsBilling, WhmcsBillingConfig};
pub use client::{ServiceFilter, SubscriptionKey, WhmcsClient, WhmcsClientBuilder};
pub use credentials::Credentials;
pub use error::{classify_message, Error, ErrorKind, TransportFailure};
pub use php::encode_custom_fields;
pub use types::{
    Client, CustomFieldValue, Invoice, InvoiceAction, InvoiceItem, InvoiceSummary, NewBillableItem, NewClient,
    NewOrder, Order, OrderItem, OrderLine, PlacedOrder, Product, Service, ServiceAddon,
};
pub use usage::{parse_usage_marker, usage_marker};
pub use version::{
    check_version, detect_version, InvalidVersion, VersionCheck, VersionMismatch, VersionSource, WhmcsVersion,
};
/// The wire types the billing traits take, re-exported so that no dependency on `wap-types` is needed.
pub use wap_types;
pub use wap_types::Secret;

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
