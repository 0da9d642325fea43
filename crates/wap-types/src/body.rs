//! Reading an HTTP request body into **one** buffer bounded by a size limit, whatever the chunking (feature
//! `body`).
//!
//! `http_body_util::Limited::new(body, limit).collect()` bounds the number of *bytes* received but keeps every
//! received frame: a frame that is one byte of a connection's 8 KiB read buffer keeps that whole buffer alive, so a
//! body sent as 20,000 one-byte segments holds thousands of times its size. [`read_bounded`] copies each frame into
//! a single buffer and drops the frame at once, so what it holds is at most the limit (the buffer grows by doubling,
//! capped at the limit), plus the frame being copied.
//!
//! The reader has no clock: callers put the whole read under their deadline (e.g. `tokio::time::timeout`).

use std::error::Error as StdError;

use bytes::{Buf, Bytes};
use http_body::Body;
use http_body_util::BodyExt;

/// Boxed error of a body that failed to read.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Why [`read_bounded`] gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyReadError {
    /// The body is longer than the limit (permanent: resending the same body fails the same way).
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read (the connection failed or the client sent a malformed chunked encoding).
    #[error("the request body could not be read: {0}")]
    Read(#[source] BoxError),
}

impl BodyReadError {
    /// Whether sending the same request again may succeed (a read failure may be transient; a body over the limit
    /// is not).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Read(_))
    }
}

/// A body read by [`read_bounded`].
#[derive(Debug, Clone)]
pub struct BoundedBody {
    bytes: Bytes,
    peak_held_bytes: usize,
}

impl BoundedBody {
    /// The body's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The body's bytes, owned.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The most the reader held at once while reading: the capacity of its buffer plus the length of a frame it
    /// kept without copying (a body that arrives as one frame is not copied).
    pub fn peak_held_bytes(&self) -> usize {
        self.peak_held_bytes
    }
}

/// Reads `body` to its end into one buffer of at most `limit` bytes; a body longer than `limit` fails with
/// [`BodyReadError::TooLarge`] as soon as the limit is passed. Trailers are ignored.
pub async fn read_bounded<B>(body: B, limit: usize) -> Result<BoundedBody, BodyReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    // A body that arrives as a single frame is kept as it is (no copy); from the second frame on, frames are
    // copied into `buffer` and dropped.
    let mut first: Option<Bytes> = None;
    let mut buffer: Vec<u8> = Vec::new();
    let mut received = 0usize;
    let mut peak = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyReadError::Read(e.into()))?;
        let Ok(mut data) = frame.into_data() else { continue };
        let len = data.remaining();
        if len == 0 {
            continue;
        }
        received = received.checked_add(len).filter(|&n| n <= limit).ok_or(BodyReadError::TooLarge { limit })?;
        if first.is_none() && buffer.is_empty() {
            first = Some(data.copy_to_bytes(len));
            peak = peak.max(len);
            continue;
        }
        if let Some(kept) = first.take() {
            grow(&mut buffer, received, limit);
            buffer.extend_from_slice(&kept);
        } else {
            grow(&mut buffer, received, limit);
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            let n = chunk.len();
            buffer.extend_from_slice(chunk);
            data.advance(n);
        }
        peak = peak.max(buffer.capacity());
    }
    let bytes = match first {
        Some(kept) => kept,
        None => Bytes::from(buffer),
    };
    Ok(BoundedBody { bytes, peak_held_bytes: peak })
}

/// Makes room for `needed` bytes in `buffer`: doubling, never past `limit` (`needed <= limit`).
fn grow(buffer: &mut Vec<u8>, needed: usize, limit: usize) {
    if buffer.capacity() >= needed {
        return;
    }
    let target = needed.max(buffer.capacity().saturating_mul(2).min(limit)).max(needed.min(256).min(limit));
    buffer.reserve_exact(target - buffer.len());
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body::Frame;

    use super::*;

    /// A body that yields the given frames, one per poll.
    struct Frames(VecDeque<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn read(chunks: Vec<Bytes>, limit: usize) -> Result<BoundedBody, BodyReadError> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(read_bounded(Frames(chunks.into()), limit))
    }

    #[test]
    fn twenty_thousand_one_byte_frames_are_held_in_one_buffer_within_the_limit() {
        let limit = 32 * 1024;
        let chunks: Vec<Bytes> = (0..20_000u32).map(|i| Bytes::from(vec![b'a' + (i % 26) as u8])).collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let body = read(chunks, limit).expect("within the limit");
        assert_eq!(body.bytes().as_ref(), expected.as_slice());
        assert!(body.peak_held_bytes() <= limit, "held {} bytes for a limit of {limit}", body.peak_held_bytes());
        assert!(body.peak_held_bytes() >= expected.len());
    }

    #[test]
    fn a_body_over_the_limit_is_refused_whatever_the_chunking() {
        for chunk in [1usize, 7, 100, 1001] {
            let chunks = (0..1001 / chunk + 1).map(|_| Bytes::from(vec![b'x'; chunk])).collect();
            assert!(matches!(read(chunks, 1000), Err(BodyReadError::TooLarge { limit: 1000 })), "chunk {chunk}");
        }
    }

    #[test]
    fn a_body_of_exactly_the_limit_is_read_and_a_single_frame_is_not_copied() {
        let whole = Bytes::from(vec![b'y'; 1000]);
        let body = read(vec![whole.clone()], 1000).expect("at the limit");
        assert_eq!(body.bytes().as_ptr(), whole.as_ptr(), "a single frame is kept as it is");
        let body = read(vec![whole.slice(..400), Bytes::new(), whole.slice(400..)], 1000).expect("at the limit");
        assert_eq!(body.into_bytes(), whole);
        assert!(read(vec![], 10).expect("empty").bytes().is_empty());
    }
}
