//! The responder as a `tower::Service` (no server), graceful shutdown with a request in flight, and secrets kept
//! out of `Debug` output.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use wap_responder::{serve_until, Decision, FnApprover, Responder, ResponderConfig, ServerConfig};

use common::*;

fn slow_approver(started: Arc<AtomicUsize>) -> FnApprover<Infallible> {
    FnApprover::new(
        move |_| {
            started.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(Decision::Approve)
            }
        },
        |_| async { Ok(Decision::Approve) },
    )
}

#[tokio::test]
async fn works_as_a_tower_service() {
    let responder = Responder::new(Arc::new(CatalogApprover::new(["Silverq7k2d9w"], [], [])), basic_config());
    let request = http::Request::post("/wap/subscriptions")
        .header("Authorization", auth_header())
        .body(Full::new(Bytes::from(fixture("create-subscription.json"))))
        .unwrap();
    let response = responder.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 204);
    let request = http::Request::put("/wap/subscriptions")
        .header("Authorization", auth_header())
        .body(Full::new(Bytes::from_static(b"{\"EventId\": 1}")))
        .unwrap();
    let response = responder.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("State"), "names the first missing member");
    assert_eq!(responder.cached_answers(), 1);
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_then_refuses_connections() {
    let started = Arc::new(AtomicUsize::new(0));
    let server = start(Responder::new(slow_approver(started.clone()), basic_config())).await;
    let addr = server.local_addr();
    let in_flight =
        tokio::spawn(async move { approve(addr, "/subscriptions", &create_subscription_body(1, "s", "p")).await });
    tokio::time::timeout(STEP, async {
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the request reached the approver");
    server.shutdown().await;
    assert_eq!(in_flight.await.unwrap().status, 204, "the request in flight was answered");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn serve_until_stops_on_its_signal() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let responder = Responder::new(Arc::new(CatalogApprover::default()), basic_config());
    let task = tokio::spawn(serve_until(listener, responder, ServerConfig::default(), async move {
        let _ = stopped.await;
    }));
    let a = approve(addr, "/subscriptions", &fixture("delete-subscription.json")).await;
    assert_eq!(a.status, 204);
    stop.send(()).unwrap();
    tokio::time::timeout(STEP, task).await.expect("stopped").unwrap();
}

#[test]
fn debug_output_never_shows_the_password() {
    let config = ResponderConfig::basic(credentials());
    let responder = Responder::new(Arc::new(CatalogApprover::default()), config.clone());
    for text in [format!("{config:?}"), format!("{responder:?}")] {
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(text.contains(USER), "the user name is shown: {text}");
    }
}
