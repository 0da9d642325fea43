//! The crate's one top-level error, the `?` conversions of handler and source errors, and the former name of
//! `UsageLedgerError` kept as a deprecated alias.

use wap_resource_provider::{Error, NotificationError, RegistrationBuilder, UsageLedgerError, UsageSourceError};

#[test]
#[allow(deprecated)]
fn the_former_usage_ledger_error_name_still_compiles() {
    fn old(e: wap_resource_provider::LedgerError) -> UsageLedgerError {
        e
    }
    let _ = old;
}

#[test]
fn io_and_boxed_errors_convert_with_a_classification() {
    fn read_usage() -> Result<(), UsageSourceError> {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "usage store busy"))?
    }
    let e = read_usage().unwrap_err();
    assert!(e.is_retryable() && e.to_string().contains("usage store busy"), "{e}");
    fn missing() -> Result<(), UsageSourceError> {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, "usage.db"))?
    }
    assert!(!missing().unwrap_err().is_retryable());
    fn boxed() -> Result<(), UsageSourceError> {
        Err(Box::<dyn std::error::Error + Send + Sync>::from("meter service down"))?
    }
    assert!(boxed().unwrap_err().to_string().contains("meter service down"));

    fn provision() -> Result<(), NotificationError> {
        Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "/srv/quota/secret-path"))?
    }
    let e = provision().unwrap_err();
    assert_eq!(e.status, 500);
    assert_eq!(e.error.code, "InternalError");
    assert!(!e.error.message.contains("secret-path"), "the portal sees no path: {}", e.error.message);
}

#[test]
fn every_error_converts_into_the_top_level_error() {
    let registration: Error = RegistrationBuilder::new("bad name!").build().unwrap_err().into();
    assert!(matches!(registration, Error::Registration(_)) && !registration.is_retryable());
    let source: Error = UsageSourceError::new("busy", true).into();
    assert!(source.is_retryable());
}
