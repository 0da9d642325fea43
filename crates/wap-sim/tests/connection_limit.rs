//! A connection limit: connections past `SimBuilder::max_connections` get a 503 with a body and are closed, while
//! the first ones are served.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wap_sim::{WapSim, DEFAULT_MAX_CONNECTIONS};

#[tokio::test]
async fn connections_past_the_limit_get_503_and_the_first_ones_are_served() {
    assert_eq!(DEFAULT_MAX_CONNECTIONS, 1024);
    let sim = WapSim::builder().max_connections(3).start().await.unwrap();
    check_limit(sim.local_addr(), 3, "/usage?lastId=0&batchSize=1").await;
    sim.shutdown().await;
}

/// Sends `GET path` on `stream` and returns the status line of the answer (the connection stays open).
async fn exchange(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    read_head(stream).await
}

/// Reads until the end of a response head (or EOF) and returns the status line.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).lines().next().unwrap_or("").to_owned()
}

/// Reads everything up to the server's close.
async fn read_all(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut text)).await;
    String::from_utf8_lossy(&text).into_owned()
}

async fn check_limit(addr: SocketAddr, limit: usize, path: &str) {
    // The first `limit` connections are served and kept open.
    let mut open = Vec::new();
    for _ in 0..limit {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let status = exchange(&mut stream, path).await;
        assert!(status.starts_with("HTTP/1.1 ") && !status.contains(" 503 "), "served: {status}");
        open.push(stream);
    }
    // Past the limit: a 503 with a body, then the close.
    for _ in 0..3 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let answer = read_all(&mut extra).await;
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
        assert!(answer.contains(&format!("limit of {limit} connections")), "{answer}");
    }
    // The open connections are still served.
    for stream in &mut open {
        let status = exchange(stream, path).await;
        assert!(!status.contains(" 503 ") && status.starts_with("HTTP/1.1 "), "still served: {status}");
    }
    // Once one closes, a new connection is served again (the server notices the close asynchronously).
    drop(open.pop());
    let mut served = false;
    for _ in 0..400 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let status = exchange(&mut stream, path).await;
        if status.starts_with("HTTP/1.1 ") && !status.contains(" 503 ") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(served, "a freed slot is used again");
}
