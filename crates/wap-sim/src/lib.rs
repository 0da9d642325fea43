#![doc = include_str!("../README.md")]

mod admin;
mod approval;
mod client;
mod collector;
mod dataset;
mod error;
mod errors;
mod events;
mod faults;
mod ids;
mod log;
mod notify;
mod server;
mod sim;
mod time;
#[cfg(feature = "rustls")]
mod tls;
mod usage;

pub use admin::{AdminError, NewAddOn, NewPlan};
pub use approval::{
    ActionOutcome, ActionStatus, AddOnApprovalRoute, CallResult, CreateSubscription, NotificationSubscriber,
    SubscriberCall, SubscriberType, SubscriptionUpdate,
};
pub use collector::{CollectReport, CollectorAnomaly, RpRegistration, DEFAULT_COLLECTOR_BATCH_SIZE};
pub use dataset::DatasetSpec;
pub use error::SimError;
pub use errors::{Error, Result};
pub use faults::{FaultKind, FaultPlan, FaultStats};
pub use log::RequestLogEntry;
pub use notify::{NotificationCaller, RpResponse};
pub use sim::{LiveConfig, SimBuilder, WapSim, DEFAULT_MAX_CONNECTIONS, DEFAULT_PASSWORD, DEFAULT_USERNAME};
