//! Fault tolerance: what held clients see when a process dies.

use holdfast_tests::{Client, Holdfast, Origin};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

fn stream_item(content: &str) -> String {
    serde_json::json!({"items": [{"channel": "test",
        "formats": {"http-stream": {"content": content}}}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxy_loses_no_held_connection() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut stream = client.open(&hf.url("/grip")).await;
        assert!(stream.read_until("initial\n", WAIT).await);
        streams.push(stream);
    }
    // A plain streamed answer is the proxy's own: it ends with the proxy.
    let mut relayed = client.open(&hf.url("/forever")).await;
    assert!(relayed.read_until("tick\n", WAIT).await);
    let proxy = hf.child_pid("holdfast-proxy").expect("proxy running");
    let killed = Instant::now();
    kill(Pid::from_raw(proxy), Signal::SIGKILL).unwrap();
    assert!(
        hf.wait_log("proxy restarted and ready", WAIT).await,
        "{}",
        hf.logs()
    );
    assert!(
        relayed.read_to_end(Duration::from_secs(5)).await,
        "a relayed stream outlived its proxy by {:?}",
        killed.elapsed()
    );
    // Held sessions live in connmgr and the handler: still there.
    assert_eq!(hf.publish(&stream_item("after the crash\n")).await.0, 200);
    for stream in &mut streams {
        assert!(
            stream.read_until("after the crash\n", WAIT).await,
            "{}\n{}",
            stream.text(),
            hf.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_handler_ends_held_streams_and_comes_back() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).arg("--verbose").run().await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);
    let handler = hf.child_pid("holdfast-handler").expect("handler running");
    let killed = Instant::now();
    kill(Pid::from_raw(handler), Signal::SIGKILL).unwrap();
    // The client sees its stream end (it can reconnect), never a hang: the
    // restarted handler is asked about its predecessor's sessions as soon
    // as it connects, and cancels them.
    assert!(
        stream.read_to_end(WAIT).await,
        "stream still open after {:?}\n{}",
        killed.elapsed(),
        hf.logs()
    );
    eprintln!("stream ended {:?} after the handler died", killed.elapsed());
    assert!(
        hf.wait_log("handler restarted and ready", WAIT).await,
        "{}",
        hf.logs()
    );
    // Reconnecting works and publishes flow again.
    let mut again = Client::new().open(&hf.url("/grip")).await;
    assert!(again.read_until("initial\n", WAIT).await);
    let published = tokio::time::timeout(WAIT, async {
        loop {
            let (status, _) = hf.publish(&stream_item("back\n")).await;
            if status == 200 && again.read_until("back\n", Duration::from_millis(500)).await {
                return;
            }
        }
    })
    .await;
    assert!(published.is_ok(), "{}\n{}", again.text(), hf.logs());
}

/// One publish over HTTP: its status, or `None` when the publish port
/// refused or dropped the connection.
async fn try_publish(hf: &Holdfast, body: &str) -> Option<u16> {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let request = http::Request::post(hf.publish_url("/publish/"))
        .header("Content-Type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .ok()?
        .ok()?;
    let status = reply.status().as_u16();
    let _ = reply.into_body().collect().await;
    Some(status)
}

/// kill -9 of the handler under a django-eventstream origin: the SSE
/// client's stream ends at once, publishes meanwhile are refused (never a
/// 200 for an item nobody could take), and the client reconnecting with
/// `Last-Event-ID` after the restart gets every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_clients_recover_every_event_across_a_handler_restart() {
    use crate::eventstream::{behind_holdfast, messages, read_event, resume};
    let (hf, django) = behind_holdfast().await;
    let client = Client::new();
    let mut first = client.open(&hf.url("/events/")).await;
    assert!(first.read_until("event: stream-open", WAIT).await);
    for n in 1..=3 {
        django.send(n).await;
    }
    read_event(&mut first, 3).await;

    let handler = hf.child_pid("holdfast-handler").expect("handler running");
    kill(Pid::from_raw(handler), Signal::SIGKILL).unwrap();
    // Publish until the restarted handler takes it: before that, every
    // attempt fails visibly.
    let item = stream_item("while down\n");
    let mut refused = 0;
    let accepted = tokio::time::timeout(WAIT, async {
        loop {
            match try_publish(&hf, &item).await {
                Some(200) => return,
                Some(other) => panic!("publish answered {other} while the handler restarted"),
                None => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        accepted.is_ok(),
        "the handler never came back\n{}",
        hf.logs()
    );
    assert!(refused > 0, "no publish saw the handler down");
    assert!(
        first.read_to_end(WAIT).await,
        "SSE stream left hanging\n{}",
        hf.logs()
    );
    let seen_first = messages(&first.text());
    let last_id = seen_first
        .last()
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    assert_eq!(last_id, "test:3", "{}", first.text());

    // Sent while the client is away, then live after it reconnects.
    assert!(hf.wait_log("handler restarted and ready", WAIT).await);
    resume(&hf, &django, &last_id, seen_first).await;
    eprintln!("{refused} publishes refused while the handler restarted");
}

/// A WebSocket belongs to its proxy: when the proxy dies, the client gets a
/// close as soon as the restarted proxy is up, not after connmgr's 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxy_closes_its_websockets_at_once() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let origin = holdfast_tests::WsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let tcp = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/echo", hf.addr()), tcp)
        .await
        .expect("WebSocket opened");
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("an echo");
    assert!(matches!(echoed, Some(Ok(Message::Text(_)))), "{echoed:?}");
    let proxy = hf.child_pid("holdfast-proxy").expect("proxy running");
    let killed = Instant::now();
    kill(Pid::from_raw(proxy), Signal::SIGKILL).unwrap();
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "WebSocket still open {:?} after its proxy died\n{}",
        killed.elapsed(),
        hf.logs()
    );
}
