//! `wap-billing`: the whole workspace behind one dependency.
//!
//! Each part is its own crate; this facade re-exports them for the examples and cross-crate tests.

pub use wap_billing_engine as engine;
pub use wap_billing_ledger as ledger;
pub use wap_resource_provider as resource_provider;
pub use wap_responder as responder;
pub use wap_sim as sim;
pub use wap_types as types;
pub use wap_usage_client as usage_client;
