//! A real browser: headless Chromium opens an `EventSource` through
//! Holdfast, receives published events, and after the stream ends
//! reconnects with `Last-Event-ID`, which reaches the origin; and it opens
//! a WebSocket to a WebSocket-over-HTTP origin, sends, and receives a
//! published message. The page
//! reports what it sees by requesting `/report?...` (recorded by the
//! origin), so the test needs no browser automation protocol.

use holdfast_tests::{answer, Browser, Holdfast, Scripted, Seen};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

const PAGE: &str = r#"<!doctype html>
<title>Holdfast EventSource</title>
<script>
  const es = new EventSource("/events");
  es.onopen = () => fetch("/report?open");
  es.onmessage = (e) =>
    fetch("/report?data=" + encodeURIComponent(e.data) + "&id=" + encodeURIComponent(e.lastEventId));
</script>
"#;

fn origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    match seen.path.split('?').next().unwrap_or("") {
        "/page" => answer(200, &[("Content-Type", "text/html")], PAGE),
        "/events" => answer(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "browser"),
                ("Grip-Keep-Alive", ":\\n\\n; format=cstring; timeout=20"),
            ],
            // Reconnect quickly once the stream ends.
            "retry: 200\n\n",
        ),
        _ => answer(204, &[], ""),
    }
}

fn event(content: &str) -> String {
    serde_json::json!({"items": [{"channel": "browser",
        "formats": {"http-stream": {"content": content}}}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_event_source_receives_publishes_and_resumes_with_last_event_id() {
    let origin = Scripted::start(origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("handler", "update_on_first_subscription", "false")
        .run()
        .await;
    let _browser = Browser::open(&hf.url("/page"));
    let opened = |n: usize| {
        let origin = &origin;
        async move {
            origin
                .wait_for(WAIT, |_| {
                    origin
                        .seen()
                        .iter()
                        .filter(|s| s.path == "/report?open")
                        .count()
                        >= n
                })
                .await
                .is_some()
        }
    };
    assert!(
        opened(1).await,
        "the page never opened its EventSource: {:?}",
        origin.seen()
    );

    assert_eq!(
        hf.publish(&event("id: 1\ndata: hello browser\n\n")).await.0,
        200
    );
    let got = origin
        .wait_for(WAIT, |s| s.path.starts_with("/report?data="))
        .await
        .expect("the page received the event");
    assert_eq!(got.path, "/report?data=hello%20browser&id=1");

    // End the stream: the browser reconnects and says what it had.
    let close = serde_json::json!({"items": [{"channel": "browser",
        "formats": {"http-stream": {"action": "close"}}}]});
    assert_eq!(hf.publish(&close.to_string()).await.0, 200);
    assert!(
        opened(2).await,
        "the page did not reconnect: {:?}",
        origin.seen()
    );
    let reconnect = origin
        .seen()
        .into_iter()
        .filter(|s| s.path == "/events")
        .nth(1)
        .expect("second /events request");
    assert_eq!(reconnect.header("last-event-id").as_deref(), Some("1"));

    assert_eq!(hf.publish(&event("id: 2\ndata: again\n\n")).await.0, 200);
    let again = origin
        .wait_for(WAIT, |s| s.path.starts_with("/report?data=again"))
        .await;
    assert_eq!(
        again.map(|s| s.path),
        Some("/report?data=again&id=2".to_owned())
    );
}

const WS_PAGE: &str = r#"<!doctype html>
<title>Holdfast WebSocket</title>
<script>
  const ws = new WebSocket("ws://" + location.host + "/ws");
  ws.onopen = () => ws.send("hi from the browser");
  ws.onmessage = (e) => fetch("/report?msg=" + encodeURIComponent(e.data));
</script>
"#;

/// A WebSocket-over-HTTP origin for the page: accepts with GRIP, subscribes
/// the connection to `browser-ws`, echoes text with the `m:` prefix.
fn ws_origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    const EVENTS: (&str, &str) = ("Content-Type", "application/websocket-events");
    match seen.path.split('?').next().unwrap_or("") {
        "/wspage" => answer(200, &[("Content-Type", "text/html")], WS_PAGE),
        "/ws" if seen.body == "OPEN\r\n" => {
            let control = r#"c:{"type":"subscribe","channel":"browser-ws"}"#;
            answer(
                200,
                &[EVENTS, ("Sec-WebSocket-Extensions", "grip")],
                &format!("OPEN\r\nTEXT {:x}\r\n{control}\r\n", control.len()),
            )
        }
        "/ws" => holdfast_tests::harness::scripted::echo_events(seen),
        _ => answer(204, &[], ""),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_websocket_sends_and_receives_a_publish() {
    let origin = Scripted::start(ws_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {},over_http", origin.target()))
        .arg("--verbose")
        .run()
        .await;
    let _browser = Browser::open(&hf.url("/wspage"));
    let echo = origin
        .wait_for(WAIT, |s| s.path.starts_with("/report?msg="))
        .await
        .unwrap_or_else(|| panic!("no echo reported: {:?}\n{}", origin.seen(), hf.logs()));
    assert_eq!(echo.path, "/report?msg=hi%20from%20the%20browser");
    assert!(hf.wait_log("kind=subscribe", WAIT).await, "{}", hf.logs());
    let item = serde_json::json!({"items": [{"channel": "browser-ws",
        "formats": {"ws-message": {"content": "published to the browser"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    let published = origin
        .wait_for(WAIT, |s| s.path.contains("published"))
        .await;
    assert_eq!(
        published.map(|s| s.path),
        Some("/report?msg=published%20to%20the%20browser".to_owned()),
        "{}",
        hf.logs()
    );
}
