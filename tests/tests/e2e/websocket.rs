//! WebSocket passthrough: a real client library (Python `websockets`)
//! through Holdfast to a WebSocket origin: subprotocols, text and binary
//! messages, pings, close codes both ways, a refused upgrade, and the
//! limits (bad handshakes, oversize messages, invalid UTF-8).

use holdfast_tests::harness::python::{python, script};
use holdfast_tests::{
    answer, free_port, raw_exchange, run_json, Holdfast, PyWsOrigin, Scripted, Seen, WsOrigin,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

async fn client(url: &str, scenario: &str) -> serde_json::Value {
    run_json("ws_client.py", &[url, scenario], Duration::from_secs(40)).await
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
    assert_eq!(out["close_answer"], serde_json::json!([4000, "bye"]));
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

/// Upgrades a raw TCP connection (`extra` header lines included); returns
/// it and the 101 head.
async fn raw_upgrade(hf: &Holdfast, extra: &str) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    let request = format!("GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    (stream, head)
}

/// A masked client frame: `first` is the FIN/RSV/opcode byte.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one server frame: its first byte and payload.
async fn server_frame(stream: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            stream.read_exact(&mut n).await.unwrap();
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            stream.read_exact(&mut n).await.unwrap();
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

/// Frames from the server until a text message: the pongs before it (their
/// payloads) and the text.
async fn pongs_then_text(stream: &mut tokio::net::TcpStream) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut pongs = Vec::new();
    loop {
        match server_frame(stream).await {
            (0x8a, payload) => pongs.push(payload),
            (0x81, text) => return (pongs, text),
            (first, payload) => panic!("unexpected frame {first:#x} {payload:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_is_answered_once_also_between_fragments() {
    let origin = PyWsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let (mut stream, _) = raw_upgrade(&hf, "").await;
    // A ping, then a message: its echo went through the origin, after
    // anything the ping could have caused there.
    let mut frames = client_frame(0x89, b"p1");
    frames.extend(client_frame(0x81, b"after"));
    stream.write_all(&frames).await.unwrap();
    let (pongs, text) = pongs_then_text(&mut stream).await;
    assert_eq!(pongs, vec![b"p1".to_vec()], "one pong\n{}", hf.logs());
    assert_eq!(text, b"after");
    // A ping between the fragments of a text message (RFC 6455 5.4).
    let mut frames = client_frame(0x01, b"frag");
    frames.extend(client_frame(0x89, b"p2"));
    frames.extend(client_frame(0x80, b"ment"));
    stream.write_all(&frames).await.unwrap();
    let (pongs, text) = pongs_then_text(&mut stream).await;
    assert_eq!(pongs, vec![b"p2".to_vec()], "one pong\n{}", hf.logs());
    assert_eq!(text, b"fragment");
}

/// Sends `bytes` on a fresh WebSocket through Holdfast and returns the
/// code of the close frame that answers them.
async fn close_code_for(bytes: &[u8]) -> u16 {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let (mut stream, _) = raw_upgrade(&hf, "").await;
    stream.write_all(bytes).await.unwrap();
    let (first, payload) = server_frame(&mut stream).await;
    assert_eq!(first, 0x88, "a close frame\n{}", hf.logs());
    u16::from_be_bytes([payload[0], payload[1]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    assert_eq!(
        close_code_for(&client_frame(0x81, &[0xff, 0xfe])).await,
        1007
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_length_with_its_top_bit_set_closes_with_1002() {
    // Binary, masked, 64-bit length 2^63 + 5 (RFC 6455 5.2: the top bit
    // must be 0), then a mask.
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&(0x8000_0000_0000_0005u64).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(close_code_for(&frame).await, 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_with_a_real_client() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("runner", "allow_compression", "true")
        .run()
        .await;
    let out = client(&ws_url(&hf, "/chat"), "deflate").await;
    assert_eq!(
        out["extensions"],
        serde_json::json!(["permessage-deflate"]),
        "{out}\n{}",
        hf.logs()
    );
    assert_eq!(out["text_ok"], true, "{out}");
    assert_eq!(out["binary_ok"], true, "{out}");
    assert_eq!(out["small"], "small");
    // 2 MiB of "x" is a few KiB compressed: the limit is on what it
    // inflates to.
    assert_eq!(out["code"], 1009, "{out}\n{}", hf.logs());
    // Off by default, as in Pushpin.
    let plain = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let out = client(&ws_url(&plain, "/chat"), "deflate").await;
    assert_eq!(out["extensions"], serde_json::json!([]), "{out}");
    assert_eq!(out["text_ok"], true, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_on_the_wire() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("runner", "allow_compression", "true")
        .run()
        .await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let (mut stream, head) = raw_upgrade(&hf, offer).await;
    assert!(
        head.to_ascii_lowercase().contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        "{head}"
    );
    // An uncompressed message is allowed; the echo comes back compressed
    // (RSV1 set, much shorter).
    let text = "compress me ".repeat(100);
    stream
        .write_all(&client_frame(0x81, text.as_bytes()))
        .await
        .unwrap();
    let (first, payload) = server_frame(&mut stream).await;
    assert_eq!(first, 0xc1, "FIN, RSV1, text");
    assert!(payload.len() < text.len() / 5, "{} bytes", payload.len());
    // A compressed message that is not deflate data: protocol error.
    stream
        .write_all(&client_frame(0xc1, &[0xff, 0xff, 0xff]))
        .await
        .unwrap();
    let (first, payload) = server_frame(&mut stream).await;
    assert_eq!(first, 0x88, "a close frame");
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        1002,
        "{}",
        hf.logs()
    );
    // A smaller window for connmgr's compressor than it has: accepted, and
    // messages to that client go uncompressed (RFC 7692 allows it).
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n";
    let (mut stream, head) = raw_upgrade(&hf, offer).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("client_no_context_takeover; server_max_window_bits=9"),
        "{head}"
    );
    stream
        .write_all(&client_frame(0x81, text.as_bytes()))
        .await
        .unwrap();
    let (first, payload) = server_frame(&mut stream).await;
    assert_eq!(first, 0x81, "FIN, text, not compressed");
    assert_eq!(payload, text.as_bytes());
    // An offer that is not valid gets no extension.
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n";
    let (_, head) = raw_upgrade(&hf, offer).await;
    assert!(
        !head.to_ascii_lowercase().contains("permessage-deflate"),
        "{head}"
    );
}

/// A WebSocket-over-HTTP origin: accepts with GRIP on and a greeting (plus
/// one unprefixed message that must be dropped), echoes text with the
/// `m:` prefix, answers "bad" with a malformed body, refuses `/refuse`;
/// on `/gw-room` subscribes to channel `gw` instead of greeting, and
/// answers an empty request (a refresh) with "refreshed".
pub(crate) fn gateway_origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    const EVENTS: (&str, &str) = ("Content-Type", "application/websocket-events");
    if seen.path == "/refuse" {
        return answer(403, &[("Content-Type", "text/plain")], "go away\n");
    }
    if seen.path == "/gw-room" && seen.body == "OPEN\r\n" {
        let control = r#"c:{"type":"subscribe","channel":"gw"}"#;
        return answer(
            200,
            &[EVENTS, ("Sec-WebSocket-Extensions", "grip")],
            &format!("OPEN\r\nTEXT {:x}\r\n{control}\r\n", control.len()),
        );
    }
    if seen.body.is_empty() {
        // A refresh: the origin has something to say.
        return answer(200, &[EVENTS], "TEXT b\r\nm:refreshed\r\n");
    }
    if seen.body == "OPEN\r\n" {
        return answer(
            200,
            &[
                EVENTS,
                ("Sec-WebSocket-Extensions", "grip"),
                ("Set-Meta-User", "alice"),
            ],
            "OPEN\r\nTEXT 7\r\nm:hello\r\nTEXT 9\r\nnoprefix!\r\n",
        );
    }
    if seen.body.contains("bad") {
        return answer(200, &[EVENTS], "TEXT zz\r\n");
    }
    holdfast_tests::harness::scripted::echo_events(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http_gateway() {
    let origin = Scripted::start(gateway_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {},over_http", origin.target()))
        .run()
        .await;
    let out = client(&ws_url(&hf, "/gw"), "gateway").await;
    assert_eq!(out["first"], "hello", "{out}\n{}", hf.logs());
    assert_eq!(out["echo"], "echo me");
    assert_eq!(
        out["code"], 1011,
        "a malformed answer closes the client with 1011"
    );
    assert!(
        hf.wait_log("malformed websocket-events", WAIT).await,
        "{}",
        hf.logs()
    );

    let requests = origin.seen();
    let open = &requests[0];
    assert_eq!(open.method, "POST");
    assert_eq!(open.body, "OPEN\r\n");
    assert_eq!(
        open.header("accept").as_deref(),
        Some("application/websocket-events")
    );
    assert_eq!(
        open.header("content-type").as_deref(),
        Some("application/websocket-events")
    );
    assert_eq!(
        open.header("sec-websocket-extensions").as_deref(),
        Some("grip")
    );
    assert!(open.header("grip-sig").is_some());
    let connection_id = open.header("connection-id").expect("Connection-Id");
    let echo = &requests[1];
    assert_eq!(echo.body, "TEXT 7\r\necho me\r\n");
    assert_eq!(echo.header("connection-id"), Some(connection_id));
    assert_eq!(
        echo.header("meta-user").as_deref(),
        Some("alice"),
        "Set-Meta-User comes back as Meta-User"
    );

    let refused = client(&ws_url(&hf, "/refuse"), "refused").await;
    assert_eq!(
        (refused["status"].as_u64(), refused["body"].as_str()),
        (Some(403), Some("go away\n"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http_to_a_django_grip_origin() {
    let port = free_port();
    let hf = Holdfast::builder()
        .route(format!("* 127.0.0.1:{port},over_http"))
        .run()
        .await;
    let _django = crate::eventstream::Django::start(port, &hf.publish_url("")).await;
    let out = client(&ws_url(&hf, "/ws/echo/"), "echo-simple").await;
    assert_eq!(out["text"], "hello", "{out}\n{}", hf.logs());
    assert_eq!(out["again"], "again");
    assert_eq!(out["close_code"], 1000);
}

/// Runs the `room` scenario: returns once the client is subscribed and has
/// had its echo, with a way to read the rest of its output.
pub(crate) async fn room_client(
    url: &str,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(python())
        .arg(script("ws_client.py"))
        .args([url, "room"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python started");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(WAIT, lines.next_line()).await;
    assert!(
        matches!(&ready, Ok(Ok(Some(line))) if line.contains("ready")),
        "{ready:?}"
    );
    (child, lines)
}

/// Holdfast in front of the Django app over WebSocket-over-HTTP, and a
/// client of `/ws/room/` subscribed to "room" (the handler has the
/// subscription), with a way to read the client's report.
async fn django_room() -> (
    Holdfast,
    crate::eventstream::Django,
    u16,
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    let port = free_port();
    let hf = Holdfast::builder()
        .route(format!("* 127.0.0.1:{port},over_http"))
        .arg("--verbose")
        .run()
        .await;
    let django = crate::eventstream::Django::start(port, &hf.publish_url("")).await;
    let (child, lines) = room_client(&ws_url(&hf, "/ws/room/")).await;
    assert!(hf.wait_log("kind=subscribe", WAIT).await, "{}", hf.logs());
    (hf, django, port, child, lines)
}

/// The client's final report.
async fn report(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    hf: &Holdfast,
) -> serde_json::Value {
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("client silent:\n{}", hf.logs()))
        .unwrap()
        .unwrap_or_default();
    serde_json::from_str(&line).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grip_over_websocket_subscribe_and_publish_with_django_grip() {
    let (hf, _django, port, _child, mut lines) = django_room().await;
    // django-grip publishes a ws-message to "room"; the handler sends it
    // through the proxy that owns the session.
    let said = holdfast_tests::Client::new()
        .get(&format!("http://127.0.0.1:{port}/say/?m=from%20django"))
        .await;
    assert_eq!(said.status, 200, "{}", said.text());
    let out = report(&mut lines, &hf).await;
    assert_eq!(out["echo"], "hello", "{out}\n{}", hf.logs());
    assert_eq!(out["published"], "from django", "{out}\n{}", hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_message_close_action_closes_the_websocket() {
    let (hf, _django, _port, _child, mut lines) = django_room().await;
    let close = serde_json::json!({"items": [{"channel": "room",
        "formats": {"ws-message": {"action": "close", "code": 4004, "reason": "kicked"}}}]});
    assert_eq!(hf.publish(&close.to_string()).await.0, 200);
    let out = report(&mut lines, &hf).await;
    assert_eq!(
        out["closed"],
        serde_json::json!([4004, "kicked"]),
        "{out}\n{}",
        hf.logs()
    );
    assert!(
        hf.wait_log("closed by publish", WAIT).await,
        "{}",
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grip_over_a_native_websocket_origin() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .arg("--verbose")
        .run()
        .await;
    let (_child, mut lines) = room_client(&ws_url(&hf, "/grip-room")).await;
    assert!(hf.wait_log("kind=subscribe", WAIT).await, "{}", hf.logs());
    let item = serde_json::json!({"items": [{"channel": "native",
        "formats": {"ws-message": {"content": "published"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    let out = report(&mut lines, &hf).await;
    assert_eq!(out["echo"], "hello", "the m: prefix is removed: {out}");
    assert_eq!(out["published"], "published", "{out}\n{}", hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_message_refresh_makes_the_gateway_ask_the_origin() {
    let origin = Scripted::start(gateway_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {},over_http", origin.target()))
        .arg("--verbose")
        .run()
        .await;
    let (_child, mut lines) = room_client(&ws_url(&hf, "/gw-room")).await;
    assert!(hf.wait_log("kind=subscribe", WAIT).await, "{}", hf.logs());
    let refresh = serde_json::json!({"items": [{"channel": "gw",
        "formats": {"ws-message": {"action": "refresh"}}}]});
    assert_eq!(hf.publish(&refresh.to_string()).await.0, 200);
    let out = report(&mut lines, &hf).await;
    assert_eq!(out["echo"], "hello");
    assert_eq!(out["published"], "refreshed", "{out}\n{}", hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_to_a_tls_target() {
    let origin = WsOrigin::start_tls().await;
    let hf = Holdfast::builder()
        .route(format!(
            "*,path_beg=/insecure {},ssl,insecure",
            origin.target()
        ))
        .route(format!("* {},ssl", origin.target()))
        .run()
        .await;
    let out = client(&ws_url(&hf, "/insecure/echo"), "echo-simple").await;
    assert_eq!(out["text"], "hello", "{out}\n{}", hf.logs());
    // A self-signed certificate is refused unless the target says insecure.
    let refused = client(&ws_url(&hf, "/verified"), "refused").await;
    assert_eq!(refused["status"], 502, "{refused}");
}
