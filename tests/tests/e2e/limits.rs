//! connmgr's limits answer with the right status and a message.

use holdfast_tests::{raw_exchange, Client, Holdfast, Origin};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

async fn started() -> (Origin, Holdfast) {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("runner", "client_max_body_size", "100000")
        .set("runner", "client_maxconn", "3")
        .set("runner", "client_idle_timeout", "2")
        .run()
        .await;
    (origin, hf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits() {
    let (origin, hf) = started().await;

    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "x".repeat(10_000)
    );
    let raw = raw_exchange(&hf.addr(), big_header.as_bytes(), WAIT).await;
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw}");

    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = raw_exchange(
        &hf.addr(),
        format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
        WAIT,
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw}");
    assert!(raw.contains("the limit is 64"), "{raw}");

    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "u".repeat(5000)
    );
    let raw = raw_exchange(&hf.addr(), long_uri.as_bytes(), WAIT).await;
    assert!(raw.starts_with("HTTP/1.1 414"), "{raw}");
    assert!(raw.contains("the limit is 4096"), "{raw}");

    let declared =
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n";
    let raw = raw_exchange(&hf.addr(), declared.as_bytes(), WAIT).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("the limit is 100000"), "{raw}");
    assert_eq!(
        origin.requests(),
        0,
        "refused requests must not reach the origin"
    );

    // A chunked body that grows past the limit is cut off with 413 too.
    let client = Client::new();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for _ in 0..10 {
            if tx
                .send(bytes::Bytes::from(vec![b'z'; 30_000]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let reply = client.send_streamed("POST", &hf.url("/upload"), rx).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_maxconn_get_503() {
    let (_origin, hf) = started().await;
    // Three idle connections take every permit (client_maxconn=3)...
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(hf.addr()).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // ...so the fourth is refused with a clear answer.
    let raw = raw_exchange(&hf.addr(), b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", WAIT).await;
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(raw.contains("Too many connections"), "{raw}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let (_origin, hf) = started().await;
    let mut stream = TcpStream::connect(hf.addr()).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    // Nothing is sent; the server closes after client_idle_timeout (2 s).
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("closed within 10 s");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed too early: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_get_400_and_reach_no_origin() {
    let (origin, hf) = started().await;
    let raw = raw_exchange(
        &hf.addr(),
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("2 Host headers"), "{raw}");
    assert_eq!(origin.requests(), 0, "nothing reached the origin");
    // One Host header is fine.
    let raw = raw_exchange(
        &hf.addr(),
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_get_400() {
    let (_origin, hf) = started().await;
    for (what, body) in [
        ("negative size", "-1\r\nx\r\n0\r\n\r\n"),
        ("hex prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        ("leading space", " 5\r\nhello\r\n0\r\n\r\n"),
        ("size overflow", "fffffffffffffffffffff\r\nx\r\n0\r\n\r\n"),
        ("bare LF size line", "5\nhello\r\n0\r\n\r\n"),
        ("bad chunk terminator", "5\r\nhelloXX0\r\n\r\n"),
    ] {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
        );
        let raw = raw_exchange(&hf.addr(), request.as_bytes(), WAIT).await;
        assert!(
            raw.starts_with("HTTP/1.1 400"),
            "{what}: {raw}\n{}",
            hf.logs()
        );
        assert!(raw.contains("malformed"), "{what}: {raw}");
    }
}
