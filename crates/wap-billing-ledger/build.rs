//! Emits `cfg(wap_billing_postgres_tests)` when `WAP_BILLING_TEST_POSTGRES_URL` is set at build time, so the tests
//! that need PostgreSQL are compiled as ordinary tests then, and as `#[ignore]`d ones (reported as ignored, never as
//! passed) without it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(wap_billing_postgres_tests)");
    println!("cargo::rerun-if-env-changed=WAP_BILLING_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("WAP_BILLING_TEST_POSTGRES_URL").is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=wap_billing_postgres_tests");
    }
}
