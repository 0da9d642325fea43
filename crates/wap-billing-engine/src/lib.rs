#![doc = include_str!("../README.md")]

pub mod adapter;
mod backoff;
pub mod billing_http;
mod clock;
pub mod config;
mod error;
pub mod handler;
pub mod identity;
pub mod journal;
pub mod lease;
mod memory_source;
pub mod operator;
pub mod processor;
pub mod settings;
pub mod source;
pub mod status;
pub mod store;
pub mod usage_lines;
pub mod usage_service;

pub use adapter::{
    Adapter, AdapterBuilder, AdapterError, AdapterStatus, AdminConfig, AdminService, Health, HealthState,
};
/// The `#[async_trait]` attribute, re-exported to implement [`EventHandler`], [`UsageHandler`], [`IdentityMap`],
/// [`FeedSource`] and [`StateStore`] without a dependency on `async-trait`: `#[wap_billing_engine::async_trait]`.
/// (Forgetting it gives a lifetime error about `impl Future` not matching the trait.)
pub use async_trait::async_trait;
#[allow(deprecated)]
pub use config::ConfigError;
pub use config::{ElectionMode, EngineConfig, EngineConfigBuilder, EngineConfigError};
pub use error::{Error, Result};
pub use handler::{EntityChange, EventContext, EventHandler, HandlerError, IdempotencyKey, UsageBatch, UsageHandler};
pub use identity::{IdentityMap, StoreIdentityMap};
pub use journal::{Delivery, InDoubtResolution, Intent, Reconciliation};
pub use lease::{LeaderElector, Leadership};
pub use memory_source::{FetchRequest, MemorySource};
pub use operator::Operator;
pub use processor::{EventProcessor, ProcessorHandle, UsageProcessor};
pub use source::{FeedItem, FeedSource, MalformedItem, SourceError, SourceErrorKind};
pub use status::{FeedStatus, HeldEvent, Phase, ProcessorStatus, WaitingEvent};
#[cfg(feature = "postgres")]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{
    AuditAction, AuditEntry, EventCommit, FeedCursor, FeedHold, Fence, HaltReason, HaltStatus, HaltTarget,
    IdentityKind, IdentityMapping, LeaseRecord, ProcessedEvent, ProcessedOutcome, ProcessorKind, StateStore,
    StoreError, UnitAttempts,
};
pub use usage_lines::{UsageLine, UsageLines, UsagePeriod, UsageShape};
pub use usage_service::UsageServiceSource;
/// The approval and pricing responder the adapter serves (re-exported for [`AdapterBuilder::responder`]).
pub use wap_responder as responder;
/// The wire types the handler traits take ([`wap_types::Plan`], [`wap_types::UsageRecord`], …), re-exported so
/// that a billing system needs no dependency of its own on `wap-types`: `use wap_billing_engine::wap_types::Plan;`.
pub use wap_types;
/// The Usage Service client the adapter pulls with (re-exported for [`AdapterBuilder::usage_service`]).
pub use wap_usage_client as usage_client;
