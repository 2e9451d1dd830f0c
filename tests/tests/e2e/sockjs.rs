//! SockJS (route option `sockjs`): the sockjs-client library in headless
//! Chromium reaches a WebSocket-over-HTTP origin with GRIP through each
//! transport it may use (WebSocket, xhr-streaming, EventSource,
//! xhr-polling, JSONP polling, EventSource in the iframe page): the
//! origin's greeting, an echo of what the page sends,
//! and a publish to the channel the origin subscribed the session to.
//! The page reports what it sees by requesting `/report?...`.

use holdfast_tests::harness::scripted::echo_events;
use holdfast_tests::{answer, Browser, Client, Holdfast, Scripted, Seen};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

const PAGE: &str = r#"<!doctype html>
<title>SockJS through Holdfast</title>
<script src="/sockjs.min.js"></script>
<script>
  const t = new URLSearchParams(location.search).get("t");
  const report = (what) => fetch("/report?t=" + t + "&" + what);
  const sock = new SockJS("/sock", null, {transports: [t]});
  sock.onopen = () => { report("open=" + sock.transport); sock.send("hello " + t); };
  sock.onmessage = (e) => report("msg=" + encodeURIComponent(e.data));
  sock.onclose = (e) => report("close=" + e.code);
</script>
"#;

fn sockjs_library() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.npm/node_modules/sockjs-client/dist/sockjs.min.js");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/npm-env.sh installs it)", path.display()))
}

fn origin(seen: &Seen, library: &str) -> holdfast_tests::harness::scripted::Answer {
    const EVENTS: (&str, &str) = ("Content-Type", "application/websocket-events");
    match seen.path.split('?').next().unwrap_or("") {
        "/page" => answer(200, &[("Content-Type", "text/html")], PAGE),
        "/sockjs.min.js" => answer(200, &[("Content-Type", "application/javascript")], library),
        "/sock" if seen.body == "OPEN\r\n" => {
            let control = r#"c:{"type":"subscribe","channel":"sj"}"#;
            let greeting = "m:welcome";
            answer(
                200,
                &[EVENTS, ("Sec-WebSocket-Extensions", "grip")],
                &format!(
                    "OPEN\r\nTEXT {:x}\r\n{control}\r\nTEXT {:x}\r\n{greeting}\r\n",
                    control.len(),
                    greeting.len()
                ),
            )
        }
        "/sock" => echo_events(seen),
        _ => answer(204, &[], ""),
    }
}

/// The origin (serving `library` as the client library) and Holdfast in
/// front of it with SockJS at `/sock`.
async fn sockjs_site(library: &str) -> (Scripted, Holdfast) {
    let library = library.to_owned();
    let origin = Scripted::start(move |seen| origin(seen, &library)).await;
    let hf = Holdfast::builder()
        .route(format!("*,sockjs=/sock {},over_http", origin.target()))
        .set("proxy", "sockjs_url", "/sockjs.min.js")
        .run()
        .await;
    (origin, hf)
}

fn reports(origin: &Scripted, transport: &str) -> Vec<String> {
    let prefix = format!("/report?t={transport}&");
    origin
        .seen()
        .iter()
        .filter_map(|s| s.path.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sockjs_client_over_every_transport() {
    let (origin, hf) = sockjs_site(&sockjs_library()).await;
    for transport in [
        "websocket",
        "xhr-streaming",
        "eventsource",
        "xhr-polling",
        "jsonp-polling",
        "iframe-eventsource",
    ] {
        let _browser = Browser::open(&hf.url(&format!("/page?t={transport}")));
        // Each report is its own request: they may arrive in any order.
        let expected = [
            format!("open={transport}"),
            "msg=welcome".to_owned(),
            format!("msg=hello%20{transport}"),
        ];
        let seen = origin
            .wait_for(WAIT, |_| {
                let got = reports(&origin, transport);
                expected.iter().all(|e| got.contains(e))
            })
            .await;
        assert!(
            seen.is_some(),
            "{transport}: {:?}\n{}",
            reports(&origin, transport),
            hf.logs()
        );
        // A publish to the channel the origin subscribed the session to.
        let item = serde_json::json!({"items": [{"channel": "sj",
            "formats": {"ws-message": {"content": format!("pub {transport}")}}}]});
        assert_eq!(hf.publish(&item.to_string()).await.0, 200);
        let published = format!("msg=pub%20{transport}");
        let seen = origin
            .wait_for(WAIT, |_| reports(&origin, transport).contains(&published))
            .await;
        assert!(
            seen.is_some(),
            "{transport}: {:?}",
            reports(&origin, transport)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockjs_endpoints_answer_as_the_protocol_says() {
    let (_origin, hf) = sockjs_site("").await;
    let client = Client::new();
    let info = client
        .send(
            "GET",
            &hf.url("/sock/info"),
            &[("Origin", "https://app.test")],
            Vec::new(),
        )
        .await;
    assert_eq!(info.status, 200);
    assert_eq!(
        info.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    let json = info.json();
    assert_eq!(
        (json["websocket"].as_bool(), json["cookie_needed"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        client.get(&hf.url("/sock")).await.text(),
        "Welcome to SockJS!\n"
    );
    // A polling session: open, then the origin's greeting, then what it
    // echoes of a send.
    let poll = |client: Client, url: String| async move {
        client.send("POST", &url, &[], Vec::new()).await.text()
    };
    let xhr = hf.url("/sock/000/s1/xhr");
    assert_eq!(poll(client.clone(), xhr.clone()).await, "o\n");
    assert_eq!(poll(client.clone(), xhr.clone()).await, "a[\"welcome\"]\n");
    let send = client
        .send(
            "POST",
            &hf.url("/sock/000/s1/xhr_send"),
            &[],
            "[\"x\",\"y\"]",
        )
        .await;
    assert_eq!(send.status, 204, "{}", send.text());
    let mut echoed = String::new();
    while echoed.matches('"').count() < 4 {
        echoed += &poll(client.clone(), xhr.clone()).await;
    }
    assert!(
        echoed.contains("\"x\"") && echoed.contains("\"y\""),
        "{echoed}"
    );
    // Bad payloads, unknown sessions, unknown paths.
    for (body, expected) in [("", "Payload expected."), ("[1", "Broken JSON encoding.")] {
        let reply = client
            .send("POST", &hf.url("/sock/000/s1/xhr_send"), &[], body)
            .await;
        assert_eq!((reply.status, reply.text().trim()), (500, expected));
    }
    let unknown = client
        .send("POST", &hf.url("/sock/000/nope/xhr_send"), &[], "[\"x\"]")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(client.get(&hf.url("/sock/000/s1/bogus")).await.status, 404);
    // JSONP polling: frames as calls; sends as a form.
    let jsonp = hf.url("/sock/000/s2/jsonp?c=cb");
    assert_eq!(client.get(&jsonp).await.text(), "/**/cb(\"o\");\r\n");
    let sent = client
        .send(
            "POST",
            &hf.url("/sock/000/s2/jsonp_send"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "d=%5B%22j%22%5D",
        )
        .await;
    assert_eq!((sent.status, sent.text().as_str()), (200, "ok"));
    let mut calls = String::new();
    while !calls.contains("\\\"j\\\"") {
        calls += &client.get(&jsonp).await.text();
    }
    let no_callback = client.get(&hf.url("/sock/000/s3/jsonp")).await;
    assert_eq!(no_callback.status, 500);
    // The iframe page, cached by its ETag.
    let iframe = client.get(&hf.url("/sock/iframe.html")).await;
    assert!(iframe.text().contains("SockJS.bootstrap_iframe()"));
    let etag = iframe.header("etag").expect("an ETag").to_owned();
    let again = client
        .send(
            "GET",
            &hf.url("/sock/iframe.html"),
            &[("If-None-Match", etag.as_str())],
            Vec::new(),
        )
        .await;
    assert_eq!(again.status, 304);
    // Two receiving connections: the second is told so. A streaming one
    // is attached once its prelude has come.
    let mut streaming = client
        .open_request("POST", &hf.url("/sock/000/s1/xhr_streaming"), &[])
        .await;
    assert!(streaming.read_until(&"h".repeat(2048), WAIT).await);
    let busy = poll(client.clone(), xhr.clone()).await;
    assert_eq!(busy, "c[2010,\"Another connection still open\"]\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_publishes_reaches_a_polling_client_in_order_and_idle_sessions_end() {
    let (origin, hf) = sockjs_site("").await;
    let client = Client::new();
    let xhr = hf.url("/sock/000/burst/xhr");
    let poll = || {
        let (client, url) = (client.clone(), xhr.clone());
        async move { client.send("POST", &url, &[], Vec::new()).await.text() }
    };
    assert_eq!(poll().await, "o\n");
    assert_eq!(poll().await, "a[\"welcome\"]\n");
    // 90 publishes at once, more bytes than the session's window holds:
    // they wait (none dropped) and come in order over the next polls. (A
    // GRIP WebSocket session 100 publishes behind is closed as too slow.)
    let items: Vec<serde_json::Value> = (0..90)
        .map(|i| {
            serde_json::json!({"channel": "sj",
            "formats": {"ws-message": {"content": format!("{i:04}-{}", "x".repeat(1000))}}})
        })
        .collect();
    let body = serde_json::json!({"items": items}).to_string();
    assert_eq!(hf.publish(&body).await.0, 200);
    let mut got: Vec<String> = Vec::new();
    while got.len() < 90 {
        let frame = poll().await;
        let json = frame
            .strip_prefix('a')
            .unwrap_or_else(|| panic!("{frame:?} after {}\n{}", got.len(), hf.logs()))
            .trim_end();
        let batch: Vec<String> = serde_json::from_str(json).expect("a JSON array");
        got.extend(batch.into_iter().map(|m| m[..4].to_owned()));
    }
    let expected: Vec<String> = (0..90).map(|i| format!("{i:04}")).collect();
    assert_eq!(got, expected);
    // No receiving connection for 5 s: the session ends, and the origin
    // hears its close.
    let closed = origin.wait_for(WAIT, |s| s.body.contains("CLOSE")).await;
    assert!(closed.is_some(), "{:?}\n{}", origin.seen().len(), hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_websocket_endpoint_is_a_plain_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let origin = Scripted::start(|seen| origin(seen, "")).await;
    let hf = Holdfast::builder()
        .route(format!(
            "*,sockjs=/sock,sockjs_as_path=/sock {},over_http",
            origin.target()
        ))
        .run()
        .await;
    let url = format!("ws://{}/sock/websocket", hf.addr());
    let tcp = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .expect("upgraded");
    let first = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, Message::Text("welcome".into()), "no SockJS framing");
    ws.send(Message::Text("plain".into())).await.unwrap();
    let echo = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo, Message::Text("plain".into()));
}
