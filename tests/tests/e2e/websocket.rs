//! WebSocket passthrough: a real client library (Python `websockets`)
//! through Holdfast to a WebSocket origin: subprotocols, text and binary
//! messages, pings, close codes both ways, a refused upgrade, and the
//! limits (bad handshakes, oversize messages, invalid UTF-8).

use holdfast_tests::{raw_exchange, Holdfast, WsOrigin};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

async fn client(url: &str, scenario: &str) -> serde_json::Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../.venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/test.sh: it installs the Python libraries"
    );
    let output = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::process::Command::new(python)
            .arg(root.join("python/ws_client.py"))
            .args([url, scenario])
            .output(),
    )
    .await
    .expect("client finished")
    .expect("python ran");
    assert!(
        output.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the client")
}

fn ws_url(hf: &Holdfast, path: &str) -> String {
    format!("ws://{}{path}", hf.addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_pings_and_closes_pass_through() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let out = client(&ws_url(&hf, "/chat"), "echo").await;
    assert_eq!(out["subprotocol"], "chat", "{out}\n{}", hf.logs());
    assert_eq!(out["text"], "hello");
    assert_eq!(out["binary"], serde_json::json!([0, 1, 255]));
    assert_eq!(out["pong"], true);
    assert_eq!(
        origin.wait_close(WAIT).await,
        Some((4000, "bye".to_owned())),
        "{}",
        hf.logs()
    );
    let handshake = &origin.handshakes()[0];
    let header = |name: &str| {
        handshake
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert!(
        header("grip-sig").is_some(),
        "the origin's handshake is signed"
    );
    assert_eq!(
        header("sec-websocket-protocol").as_deref(),
        Some("chat, superchat")
    );

    let out = client(&ws_url(&hf, "/chat"), "server-close").await;
    assert_eq!(
        (out["code"].as_u64(), out["reason"].as_str()),
        (Some(4001), Some("server bye"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_reaches_the_client_as_http() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let out = client(&ws_url(&hf, "/refuse"), "refused").await;
    assert_eq!(out["status"], 403, "{out}");
    assert_eq!(out["body"], "not for you\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_close_with_1009() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let out = client(&ws_url(&hf, "/chat"), "too-big").await;
    assert_eq!(out["code"], 1009, "{out}\n{}", hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_get_400() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let cases = [
        ("no key", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", "Sec-WebSocket-Key"),
        ("bad key", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n", "Sec-WebSocket-Key"),
        ("old version", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", "Version must be 13"),
        ("POST", "POST / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\n\r\n", "must be a GET"),
    ];
    for (name, request, expected) in cases {
        let answer = raw_exchange(&hf.addr(), request.as_bytes(), Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{name}: {answer}");
        assert!(answer.contains(expected), "{name}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let mut stream = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // A masked text frame carrying 0xff 0xfe.
    let mask = [1u8, 2, 3, 4];
    let payload = [0xffu8, 0xfe];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.unwrap();
    let mut reply = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply[0], 0x88, "a close frame");
    assert_eq!(
        u16::from_be_bytes([reply[2], reply[3]]),
        1007,
        "{}",
        hf.logs()
    );
}
