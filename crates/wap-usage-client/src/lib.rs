#![doc = include_str!("../README.md")]

mod builder;
mod client;
mod clock;
mod error;
mod feed;
mod redact;
mod retry;
mod retry_after;
mod settings;
mod stream;
#[cfg(feature = "rustls")]
mod tls;

pub use builder::{
    UsageClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_POLL_INTERVAL, DEFAULT_TIMEOUT,
    SETTING_KEYS,
};
pub use client::UsageClient;
#[cfg(feature = "testing")]
pub mod testing;
pub use clock::{Clock, Sleep, TokioClock};
pub use error::{BoxError, DecodeErrorKind, Error, TransportErrorKind};
pub use feed::{FeedClient, FeedItem, MalformedRecord, Page, PageHalt, PageItem, RetentionGap};
pub use retry::{RetryPolicy, RetrySchedule};
pub use retry_after::RetryAfter;
pub use settings::UsageServiceSettings;
pub use stream::{FeedStream, PageStream, Prefetch};
pub use wap_types;

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
pub use wap_types::{FeedKind, StartId, StartIdMode};
