//! Pushpin's session feature (route option `session`): held responses name
//! a client session and how to find its id in later requests, WebSocket
//! origins name one with `c:{"type":"session"}`, publishes update the last
//! ids it was sent, and later requests carrying the id reach the origin
//! with `Grip-Session-Id` and `Grip-Last`.

use futures_util::{SinkExt, StreamExt};
use holdfast_tests::harness::scripted::{echo_events, Answer};
use holdfast_tests::{answer, Client, Holdfast, Scripted, Seen};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

fn origin(seen: &Seen) -> Answer {
    const EVENTS: (&str, &str) = ("Content-Type", "application/websocket-events");
    if seen.path == "/stream" {
        return answer(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "news"),
                ("Grip-Session-Id", "abc"),
                ("Grip-Session-Detect", "path-prefix=/api/; sid-ptr=/session"),
                (
                    "Grip-Session-Detect",
                    "path-prefix=/form/; sid-ptr=/sid; json-param=data",
                ),
                // Malformed rules are skipped, not fatal.
                ("Grip-Session-Detect", "path-prefix=/broken/"),
                ("Grip-Last", "other; last-id=9"),
            ],
            "start\n",
        );
    }
    if seen.path.starts_with("/ws") {
        if seen.body == "OPEN\r\n" {
            let subscribe = r#"c:{"type":"subscribe","channel":"room"}"#;
            let session = r#"c:{"type":"session","id":"wsid"}"#;
            let bad = r#"c:{"type":"session","id":5}"#;
            return answer(
                200,
                &[EVENTS, ("Sec-WebSocket-Extensions", "grip")],
                &format!(
                    "OPEN\r\nTEXT {:x}\r\n{subscribe}\r\nTEXT {:x}\r\n{session}\r\nTEXT {:x}\r\n{bad}\r\n",
                    subscribe.len(),
                    session.len(),
                    bad.len()
                ),
            );
        }
        return echo_events(seen);
    }
    answer(200, &[("Content-Type", "text/plain")], "ok\n")
}

/// Sends a request through Holdfast; returns what the origin saw of it.
async fn through(
    hf: &Holdfast,
    origin: &Scripted,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Seen {
    let tag = format!("{path}?n={}", origin.seen().len());
    let reply = Client::new()
        .send("POST", &hf.url(&tag), headers, body.to_owned())
        .await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), hf.logs());
    origin
        .wait_for(WAIT, |s| s.path == tag)
        .await
        .expect("the origin got the request")
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_carry_last_ids_to_the_origin() {
    let origin = Scripted::start(origin).await;
    let target = origin.target();
    let hf = Holdfast::builder()
        .route(format!("nosession.test {target}"))
        .route(format!("*,session,path_beg=/ws {target},over_http"))
        .route(format!("*,session {target}"))
        .arg("--verbose")
        .run()
        .await;
    let json = [("Content-Type", "application/json")];

    // A held stream names session abc and two ways to find it.
    let mut stream = Client::new().open(&hf.url("/stream")).await;
    assert!(stream.read_until("start\n", WAIT).await, "{}", hf.logs());
    assert!(stream
        .headers
        .keys()
        .all(|k| !k.as_str().starts_with("grip-")));
    assert!(hf.wait_log("session held", WAIT).await, "{}", hf.logs());

    let seen = through(&hf, &origin, "/api/a", &json, r#"{"session":"abc"}"#).await;
    assert_eq!(
        seen.header("grip-session-id").as_deref(),
        Some("abc"),
        "{}",
        hf.logs()
    );
    assert_eq!(seen.all("grip-last"), ["other; last-id=9"]);

    // A publish with an id reaches the stream: the session's last id moves.
    let item = serde_json::json!({"items": [{"channel": "news", "id": "n1",
        "formats": {"http-stream": {"content": "one\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    assert!(stream.read_until("one\n", WAIT).await, "{}", hf.logs());
    let seen = through(&hf, &origin, "/api/b", &json, r#"{"session":"abc"}"#).await;
    assert_eq!(
        sorted(seen.all("grip-last")),
        ["news; last-id=n1", "other; last-id=9"]
    );

    // The id inside a form field holding JSON.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let seen = through(
        &hf,
        &origin,
        "/form/c",
        &form,
        "x=1&data=%7B%22sid%22%3A%22abc%22%7D",
    )
    .await;
    assert_eq!(seen.header("grip-session-id").as_deref(), Some("abc"));

    // No session: a non-string id, a body that is not JSON, a path no rule
    // covers, a route without `session`. A client's own session headers
    // never reach the origin.
    let forged = [
        ("Content-Type", "application/json"),
        ("Grip-Session-Id", "forged"),
        ("Grip-Last", "news; last-id=999"),
    ];
    for (path, headers, body) in [
        ("/api/d", &json[..], r#"{"session":5}"#),
        ("/api/e", &json[..], "not json"),
        ("/elsewhere", &forged[..], r#"{"session":"abc"}"#),
        ("/broken/f", &json[..], r#"{"session":"abc"}"#),
    ] {
        let seen = through(&hf, &origin, path, headers, body).await;
        assert_eq!(seen.header("grip-session-id"), None, "{path}");
        assert!(seen.all("grip-last").is_empty(), "{path}");
    }
    let mut other_host = forged.to_vec();
    other_host.push(("Host", "nosession.test"));
    let seen = through(&hf, &origin, "/api/g", &other_host, r#"{"session":"abc"}"#).await;
    assert_eq!(seen.header("grip-session-id"), None);
    assert!(seen.all("grip-last").is_empty());

    // A WebSocket origin names session wsid; a ws-message publish to its
    // channel moves that session's last id.
    let tcp = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(format!("ws://{}/ws/room", hf.addr()), tcp),
    )
    .await
    .expect("connected in time")
    .expect("WebSocket opened");
    assert!(
        hf.wait_log("GRIP session with a non-string id ignored", WAIT)
            .await,
        "{}",
        hf.logs()
    );
    assert!(hf.wait_log("kind=session", WAIT).await, "{}", hf.logs());
    let item = serde_json::json!({"items": [{"channel": "room", "id": "r5",
        "formats": {"ws-message": {"content": "hi"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    let got = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a message");
    assert!(
        matches!(&got, Some(Ok(Message::Text(t))) if t.as_str() == "hi"),
        "{got:?}\n{}",
        hf.logs()
    );
    let seen = through(&hf, &origin, "/api/h", &json, r#"{"session":"wsid"}"#).await;
    assert_eq!(seen.header("grip-session-id").as_deref(), Some("wsid"));
    assert_eq!(seen.all("grip-last"), ["room; last-id=r5"]);
    ws.send(Message::Close(None)).await.ok();
}
