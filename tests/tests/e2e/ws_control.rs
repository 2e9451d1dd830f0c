//! GRIP control messages an origin sends over a WebSocket (`keep-alive`,
//! `send-delayed`, `flush-delayed`, `detach`, unknown ones), and the
//! WebSocket-over-HTTP gateway's flow control (`Keep-Alive-Interval`,
//! `Content-Bytes-Accepted`), seen from a WebSocket client.

use futures_util::{SinkExt, StreamExt};
use holdfast_tests::{answer, Holdfast, Scripted, Seen, WsOrigin};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

const WAIT: Duration = Duration::from_secs(15);

async fn connect(hf: &Holdfast, path: &str) -> Ws {
    let url = format!("ws://{}{path}", hf.addr());
    let stream = TcpStream::connect(hf.addr()).await.expect("connected");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("connected in time")
        .expect("WebSocket opened");
    ws
}

/// The next message other than a pong.
async fn next_message(ws: &mut Ws, within: Duration) -> Message {
    loop {
        let message = tokio::time::timeout(within, ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("a valid message");
        if !matches!(message, Message::Pong(_)) {
            return message;
        }
    }
}

/// The next text message, skipping pings and the texts in `skip`.
async fn next_text(ws: &mut Ws, skip: &[&str]) -> String {
    loop {
        match next_message(ws, WAIT).await {
            Message::Text(t) if !skip.contains(&t.as_str()) => return t.to_string(),
            Message::Text(_) | Message::Ping(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Has the test origin say `c:<json>` to the proxy.
fn control(json: &str) -> Message {
    Message::text(format!("say:c:{json}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_keep_alives_and_unknown_controls() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let mut ws = connect(&hf, "/grip-room").await;

    // Replacing a delayed message sends the first at once; flushing sends
    // the second.
    ws.send(control(
        r#"{"type":"send-delayed","content":"first","timeout":60}"#,
    ))
    .await
    .unwrap();
    ws.send(control(
        r#"{"type":"send-delayed","content":"second","timeout":60}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws, &[]).await, "first", "{}", hf.logs());
    ws.send(control(r#"{"type":"flush-delayed"}"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws, &[]).await, "second");
    // One left alone goes when its time comes.
    let asked = Instant::now();
    ws.send(control(
        r#"{"type":"send-delayed","content":"third","timeout":1}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws, &[]).await, "third");
    assert!(asked.elapsed() >= Duration::from_millis(900));

    // An interval keep-alive as a ping, then an idle one as text.
    ws.send(control(
        r#"{"type":"keep-alive","content":"ka","message-type":"ping","timeout":1,"mode":"interval"}"#,
    ))
    .await
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            next_message(&mut ws, Duration::from_secs(5)).await,
            Message::Ping("ka".into())
        );
    }
    ws.send(control(
        r#"{"type":"keep-alive","content":"idle","timeout":1}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws, &[]).await, "idle");
    // Without content: off. The echo comes back, then nothing but echoes.
    ws.send(control(r#"{"type":"keep-alive"}"#)).await.unwrap();
    ws.send(Message::text("ping me")).await.unwrap();
    assert_eq!(next_text(&mut ws, &["idle"]).await, "ping me");
    let quiet = tokio::time::timeout(Duration::from_millis(2500), ws.next()).await;
    assert!(quiet.is_err(), "keep-alive still on: {quiet:?}");

    // Unknown and malformed control messages are skipped with a log line.
    ws.send(control(r#"{"type":"mystery"}"#)).await.unwrap();
    ws.send(Message::text("say:c:not json")).await.unwrap();
    assert!(
        hf.wait_log("GRIP control message not supported", WAIT)
            .await,
        "{}",
        hf.logs()
    );
    assert!(
        hf.wait_log("invalid GRIP control message ignored", WAIT)
            .await
    );
    // The connection is still fine.
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut ws, &[]).await, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_closes_the_origin_side_and_keeps_the_client() {
    let origin = WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .arg("--verbose")
        .run()
        .await;
    let mut ws = connect(&hf, "/grip-room").await;
    assert!(
        hf.wait_log("kind=subscribe", WAIT).await,
        "subscribed: {}",
        hf.logs()
    );
    ws.send(control(r#"{"type":"detach"}"#)).await.unwrap();
    assert_eq!(
        origin.wait_close(WAIT).await,
        Some((1000, "detached".to_owned())),
        "{}",
        hf.logs()
    );
    ws.send(Message::text("after detach")).await.unwrap();
    let item = serde_json::json!({"items": [{"channel": "native",
        "formats": {"ws-message": {"content": "published"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    assert_eq!(next_text(&mut ws, &[]).await, "published", "{}", hf.logs());
    assert!(
        !origin.texts().iter().any(|t| t == "after detach"),
        "{:?}",
        origin.texts()
    );
    ws.close(None).await.unwrap();
}

const EVENTS: (&str, &str) = ("Content-Type", "application/websocket-events");

/// A WebSocket-over-HTTP origin for flow control: `/ka` asks for
/// keep-alives (`Keep-Alive-Interval: 1`, which the proxy raises to 20)
/// and answers one with a message; `/partial` takes 3 bytes of the first
/// message, then everything; `/detach` subscribes to `gwd` and detaches.
fn flow_origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    let grip = ("Sec-WebSocket-Extensions", "grip");
    match (seen.path.as_str(), seen.body.as_str()) {
        ("/ka", "OPEN\r\n") => answer(
            200,
            &[EVENTS, grip, ("Keep-Alive-Interval", "1")],
            "OPEN\r\n",
        ),
        ("/ka", "") => answer(200, &[EVENTS], "TEXT c\r\nm:kept alive\r\n"),
        ("/partial", "OPEN\r\n") => answer(200, &[EVENTS], "OPEN\r\n"),
        ("/partial", _) if seen.header("content-bytes-replayed").is_none() => answer(
            200,
            &[EVENTS, ("Content-Bytes-Accepted", "3")],
            "TEXT 6\r\ntook 3\r\n",
        ),
        ("/partial", _) => answer(200, &[EVENTS], "TEXT 8\r\ntook all\r\n"),
        ("/detach", "OPEN\r\n") => {
            let subscribe = r#"c:{"type":"subscribe","channel":"gwd"}"#;
            let detach = r#"c:{"type":"detach"}"#;
            answer(
                200,
                &[EVENTS, grip],
                &format!(
                    "OPEN\r\nTEXT {:x}\r\n{subscribe}\r\nTEXT {:x}\r\n{detach}\r\n",
                    subscribe.len(),
                    detach.len()
                ),
            )
        }
        _ => answer(200, &[EVENTS], ""),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_interval_is_at_least_20_seconds() {
    let origin = Scripted::start(flow_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {},over_http", origin.target()))
        .run()
        .await;
    let opened = Instant::now();
    let mut ws = connect(&hf, "/ka").await;
    let message = next_message(&mut ws, Duration::from_secs(40)).await;
    assert_eq!(message, Message::text("kept alive"), "{}", hf.logs());
    let waited = opened.elapsed();
    assert!(waited >= Duration::from_secs(19), "after {waited:?}");
    let requests = origin.seen();
    assert_eq!(requests.len(), 2, "OPEN and one keep-alive");
    assert_eq!(requests[1].body, "", "a keep-alive request is empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_bytes_accepted_re_offers_the_rest() {
    let origin = Scripted::start(flow_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {},over_http", origin.target()))
        .run()
        .await;
    let mut ws = connect(&hf, "/partial").await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws, &[]).await, "took 3", "{}", hf.logs());
    // The rest waits for something new (no request for it alone)...
    ws.send(Message::text("next")).await.unwrap();
    assert_eq!(next_text(&mut ws, &[]).await, "took all");
    let requests = origin.seen();
    let bodies: Vec<&str> = requests.iter().map(|s| s.body.as_str()).collect();
    // ... and then goes first, with how much of it was offered before.
    assert_eq!(
        bodies,
        [
            "OPEN\r\n",
            "TEXT 5\r\nhello\r\n",
            "TEXT 2\r\nlo\r\nTEXT 4\r\nnext\r\n"
        ],
        "{}",
        hf.logs()
    );
    assert_eq!(
        requests[2].header("content-bytes-replayed").as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_over_http_sends_close_and_keeps_the_client() {
    let origin = Scripted::start(flow_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {},over_http", origin.target()))
        .arg("--verbose")
        .run()
        .await;
    let mut ws = connect(&hf, "/detach").await;
    let close = origin
        .wait_for(WAIT, |s| s.body.starts_with("CLOSE "))
        .await;
    assert!(close.is_some(), "{}", hf.logs());
    assert!(hf.wait_log("kind=subscribe", WAIT).await);
    ws.send(Message::text("after detach")).await.unwrap();
    let item = serde_json::json!({"items": [{"channel": "gwd",
        "formats": {"ws-message": {"content": "published"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    assert_eq!(next_text(&mut ws, &[]).await, "published", "{}", hf.logs());
    assert!(
        !origin
            .seen()
            .iter()
            .any(|s| s.body.contains("after detach")),
        "{:?}",
        origin.seen().iter().map(|s| &s.body).collect::<Vec<_>>()
    );
}

/// A WebSocket-over-HTTP origin that takes its time (50 ms per request)
/// and echoes every `TEXT` event of a request, in order (GRIP off: no
/// prefix).
fn slow_echo_origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    use holdfast_tests::harness::scripted::DELAY;
    if seen.body == "OPEN\r\n" {
        return answer(200, &[EVENTS], "OPEN\r\n");
    }
    let mut rest = seen.body.as_str();
    let mut out = String::new();
    while let Some((head, after)) = rest.split_once("\r\n") {
        let Some(len) = head
            .strip_prefix("TEXT ")
            .and_then(|hex| usize::from_str_radix(hex, 16).ok())
        else {
            break;
        };
        out.push_str(&format!("TEXT {len:x}\r\n{}\r\n", &after[..len]));
        rest = &after[len + 2..];
    }
    answer(200, &[EVENTS, (DELAY, "50")], &out)
}

/// A burst of 2,000 messages (1 MB in all, more than the gateway's windows)
/// from a client that reads slowly at first, through the gateway to a slow
/// origin: every message comes back, in order, and every ping is answered
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_the_gateway_to_a_slow_origin_loses_nothing() {
    const COUNT: usize = 2000;
    let origin = Scripted::start(slow_echo_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {},over_http", origin.target()))
        .run()
        .await;
    let (mut sink, mut stream) = connect(&hf, "/burst").await.split();
    let writer = tokio::spawn(async move {
        let mut pings = 0;
        for i in 0..COUNT {
            let text = format!("{i:05}{}", "x".repeat(507));
            sink.send(Message::text(text)).await.expect("sent");
            if i % 100 == 0 {
                sink.send(Message::Ping(vec![b'p'].into()))
                    .await
                    .expect("ping sent");
                pings += 1;
            }
        }
        (sink, pings)
    });
    let mut texts = Vec::with_capacity(COUNT);
    let mut pongs = 0;
    while texts.len() < COUNT {
        // A slow reader for the first messages: the echoes back up to the
        // origin, and the client's messages wait for credits meanwhile.
        if texts.len() < 200 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => texts.push(t.to_string()),
            Ok(Some(Ok(Message::Pong(_)))) => pongs += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("after {} echoes: {other:?}\n{}", texts.len(), hf.logs()),
        }
    }
    let (_sink, pings) = writer.await.expect("writer");
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(&text[..5], format!("{i:05}"), "echo {i} out of order");
        assert_eq!(text.len(), 512, "echo {i} changed");
    }
    // Pongs may trail the last echo.
    while pongs < pings {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(Message::Pong(_)))) => pongs += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("{pongs} of {pings} pongs: {other:?}"),
        }
    }
    assert_eq!(pongs, pings);
    let requests = origin.seen();
    assert!(
        requests.len() > 2,
        "the burst went over several requests: {}",
        requests.len()
    );
}
