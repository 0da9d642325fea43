//! TLS to PostgreSQL: against a server started with a certificate signed by a local CA (`.ci/run` makes both and
//! sets `WAP_BILLING_TEST_POSTGRES_URL` and `WAP_BILLING_TEST_POSTGRES_CA_FILE`), `sslmode=verify-full` with that
//! CA connects, and a CA that did not sign the server's certificate is refused with a clear, permanent error.
//! Without the variables at build time these tests are reported as ignored.

use std::path::PathBuf;

use wap_billing_engine::{PostgresStore, StoreError};

fn env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| panic!("{name}: set when these tests were built, but not now"))
}

/// The test server's URL with `params` added to its query.
fn url_with(params: &str) -> String {
    let url = env("WAP_BILLING_TEST_POSTGRES_URL");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

fn ca_file() -> PathBuf {
    PathBuf::from(env("WAP_BILLING_TEST_POSTGRES_CA_FILE"))
}

fn schema(test: &str) -> String {
    format!("t_{test}_{:08x}", fastrand::u32(..))
}

/// A CA of its own that signed nothing the server has.
fn wrong_ca(dir: &tempfile::TempDir) -> PathBuf {
    let other = rcgen::generate_simple_self_signed(vec!["wrong-ca.invalid".to_owned()]).unwrap();
    let path = dir.path().join("wrong-ca.pem");
    std::fs::write(&path, other.cert.pem()).unwrap();
    path
}

#[tokio::test]
#[cfg_attr(not(wap_billing_postgres_tls_tests), ignore = "set WAP_BILLING_TEST_POSTGRES_URL and _CA_FILE")]
async fn verify_full_with_the_servers_ca_connects() {
    let ca = ca_file();
    let store =
        PostgresStore::connect_in_schema_with_ca_file(&url_with("sslmode=verify-full"), &schema("tls_full"), Some(&ca))
            .await
            .expect("verify-full with the server's CA");
    assert!(wap_billing_engine::StateStore::schema_version(&store).await.unwrap() > 0);
    // The same through the URL's sslrootcert, and through the engine's opener.
    let url = url_with(&format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    let store = wap_billing_engine::store::open(&url).await.expect("verify-full with sslrootcert");
    assert_eq!(store.backend(), "postgres");
    let store = wap_billing_engine::store::open_with_ca_file(&url_with("sslmode=verify-ca"), Some(&ca))
        .await
        .expect("verify-ca with the CA file");
    assert_eq!(store.backend(), "postgres");
}

#[tokio::test]
#[cfg_attr(not(wap_billing_postgres_tls_tests), ignore = "set WAP_BILLING_TEST_POSTGRES_URL and _CA_FILE")]
async fn a_wrong_ca_is_refused_with_a_clear_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = wrong_ca(&dir);
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = url_with(&format!("sslmode={mode}"));
        let err = PostgresStore::connect_with_ca_file(&url, Some(&wrong)).await.expect_err("a wrong CA is refused");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Database { .. }), "{err:?}");
        assert!(text.contains(&format!("TLS to the state database failed (sslmode={mode})")), "{text}");
        assert!(text.contains("not signed by the configured CA"), "{text}");
        assert!(!err.is_retryable(), "a wrong CA does not fix itself: {text}");
    }
    // Without any CA, `require` encrypts without checking (libpq's meaning) and connects.
    PostgresStore::connect_in_schema(&url_with("sslmode=require"), &schema("tls_require")).await.expect("require");
}
