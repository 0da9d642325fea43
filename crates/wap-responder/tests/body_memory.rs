//! A body sent as 20,000 one-byte frames: the responder holds one buffer bounded by its body limit, not every
//! frame. Each frame stands for a slice of a connection's 8 KiB read buffer (what hyper hands out); a counter of the
//! frames still alive shows what the reader keeps.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;
use wap_responder::Responder;

use common::*;

/// The size of the read buffer a one-byte frame from hyper keeps alive.
const READ_BUFFER: usize = 8 * 1024;

/// One byte whose drop is counted.
struct TrackedByte {
    byte: [u8; 1],
    live: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for TrackedByte {
    fn as_ref(&self) -> &[u8] {
        &self.byte
    }
}

impl Drop for TrackedByte {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A body fed frame by frame through a channel of capacity 1.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn twenty_thousand_one_byte_frames_hold_at_most_twice_the_body_limit() {
    let limit = 32 * 1024;
    let mut config = basic_config();
    config.max_body_bytes = limit;
    let responder = Responder::new(Arc::new(CatalogApprover::new(["p"], [], [])), config);
    let (tx, rx) = mpsc::channel(1);
    let request =
        http::Request::post("/wap/subscriptions").header("Authorization", auth_header()).body(ChannelBody(rx)).unwrap();
    let answer = tokio::spawn(async move { responder.handle(request).await });
    let live = Arc::new(AtomicUsize::new(0));
    for _ in 0..20_000u32 {
        live.fetch_add(1, Ordering::SeqCst);
        let frame = Bytes::from_owner(TrackedByte { byte: [b' '], live: live.clone() });
        tx.send(frame).await.expect("the responder reads the body");
    }
    // Every frame but the one in the channel has been taken by the reader: what it still holds is counted.
    let frames_held = live.load(Ordering::SeqCst);
    let held = frames_held * READ_BUFFER + limit;
    assert!(held <= 2 * limit, "{frames_held} frames still alive after 20,000 were read: ~{held} bytes held");
    drop(tx);
    let response = answer.await.unwrap();
    // 20,000 spaces: read whole, then refused as an empty body.
    assert_eq!(response.status(), 400);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("empty"), "{text:?}");
    assert_eq!(live.load(Ordering::SeqCst), 0);
}
