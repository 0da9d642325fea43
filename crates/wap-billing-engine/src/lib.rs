#![doc = include_str!("../README.md")]

pub mod adapter;
mod backoff;
pub mod billing_http;
mod clock;
pub mod config;
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
pub use config::{ConfigError, ElectionMode, EngineConfig, EngineConfigBuilder};
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
/// The Usage Service client the adapter pulls with (re-exported for [`AdapterBuilder::usage_service`]).
pub use wap_usage_client as usage_client;
