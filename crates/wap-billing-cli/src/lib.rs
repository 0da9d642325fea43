#![doc = include_str!("../README.md")]

pub mod compose;
pub mod demo;
mod error;
pub mod export;
pub mod ops;
pub mod settings;

pub use error::{Error, Result};
pub use settings::{Problem, Settings, SettingsError};

/// The annotated example settings file that `wap-billing config example` prints (also
/// `packaging/wap-billing.toml` in the repository).
pub const EXAMPLE_SETTINGS: &str = include_str!("../wap-billing.example.toml");
