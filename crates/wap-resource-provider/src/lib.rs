#![doc = include_str!("../README.md")]

/// The `#[async_trait]` attribute, re-exported to implement [`NotificationHandler`] and [`UsageSource`].
pub use async_trait::async_trait;

pub mod auth;
pub mod context;
mod error;
pub mod handler;
pub mod ledger;
pub mod registration;
pub mod server;
pub mod tenant;
pub mod usage;

pub use auth::{BearerVerifier, EndpointAuth, StaticBearerToken};
pub use context::{CallContext, LanguagePreference, PrincipalId, PrincipalIdSource};
pub use error::{Error, Result};
pub use handler::{CreateOutcome, DeleteOutcome, NotificationError, NotificationHandler, QuotaResults, UpdateOutcome};
#[allow(deprecated)]
pub use ledger::LedgerError;
pub use ledger::{LastIdBeyondIssued, LedgerStats, UsageLedger, UsageLedgerError, DEFAULT_CLIENT_KEY_RETENTION};
pub use registration::{Registration, RegistrationBuilder, RegistrationError};
pub use server::{
    BoxError, MountPrefix, MountedRequest, ResponseBody, RpApp, RpServer, RunningServer, ServerError,
    DEFAULT_MAX_CONNECTIONS,
};
pub use tenant::{TemplateError, TemplateMatch, TenantUriMapping, UriTemplate};
pub use usage::{
    serve_usage, serve_usage_with, GapHoldBack, UsageEntry, UsagePage, UsagePoll, UsageQuery, UsageQueryError,
    UsageSource, UsageSourceError, DEFAULT_USAGE_BATCH_SIZE, DEFAULT_USAGE_GAP_GRACE,
};
