//! Pushpin's delivery settings in `[handler]`, honoured under their own
//! names: `push_in_http_max_body_size`, `connection_subscription_max`,
//! `id_cache_ttl`, `subscription_linger`, `message_hwm` (`message_wait` is
//! covered by the engine's unit tests, where time can be controlled).

use holdfast_tests::{answer, Client, Holdfast, OpenStream, Origin, Scripted};
use std::time::Duration;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);

fn stream_item(channel: &str, id: Option<&str>, content: &str) -> String {
    serde_json::json!({"items": [{"channel": channel, "id": id,
        "formats": {"http-stream": {"content": content}}}]})
    .to_string()
}

/// An origin holding every request as a stream on `channels` (initial
/// body `open`), Holdfast in front with `[handler] key=value`, and a
/// client held open past the initial body.
async fn held(channels: &'static str, key: &str, value: &str) -> (Scripted, Holdfast, OpenStream) {
    let origin = Scripted::start(move |_| {
        answer(
            200,
            &[("Grip-Hold", "stream"), ("Grip-Channel", channels)],
            "open\n",
        )
    })
    .await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("handler", key, value)
        .run()
        .await;
    let mut stream = Client::new().open(&hf.url("/")).await;
    assert!(stream.read_until("open\n", WAIT).await, "{}", hf.logs());
    (origin, hf, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_body_limit_follows_push_in_http_max_body_size() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("handler", "push_in_http_max_body_size", "2000")
        .run()
        .await;
    let (status, reply) = hf.publish(&stream_item("c", None, &"x".repeat(2500))).await;
    assert_eq!(status, 413, "{reply}");
    assert!(reply.contains("larger than 2000 bytes"), "{reply}");
    assert_eq!(hf.publish(&stream_item("c", None, "small")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_past_connection_subscription_max_are_ignored() {
    let (_origin, hf, mut stream) = held("a, b, c", "connection_subscription_max", "2").await;
    // One engine, items in order: were "c" delivered, it would come first.
    assert_eq!(hf.publish(&stream_item("c", None, "to c\n")).await.0, 200);
    assert_eq!(hf.publish(&stream_item("b", None, "to b\n")).await.0, 200);
    assert!(stream.read_until("to b\n", WAIT).await, "{}", hf.logs());
    assert_eq!(stream.text(), "open\nto b\n");
    assert!(hf.logs().contains("connection_subscription_max (2)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_cache_ttl_zero_keeps_repeated_ids() {
    for (ttl, expected) in [
        ("60", "open\none\nthree\n"),
        ("0", "open\none\ntwo\nthree\n"),
    ] {
        let (_origin, hf, mut stream) = held("d", "id_cache_ttl", ttl).await;
        for (id, text) in [("1", "one\n"), ("1", "two\n"), ("3", "three\n")] {
            assert_eq!(hf.publish(&stream_item("d", Some(id), text)).await.0, 200);
        }
        assert!(stream.read_until("three\n", WAIT).await, "{}", hf.logs());
        assert_eq!(stream.text(), expected, "id_cache_ttl={ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_channel_stays_subscribed_for_subscription_linger() {
    const LINGER: Duration = Duration::from_secs(2);
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("handler", "subscription_linger", "2")
        .run()
        .await;
    let ctx = zmq::Context::new();
    let xpub = ctx.socket(zmq::XPUB).unwrap();
    xpub.set_rcvtimeo(10_000).unwrap();
    xpub.connect(&format!("tcp://127.0.0.1:{}", hf.publish_sub_port))
        .unwrap();
    let response_item = |body: &str| {
        serde_json::json!({"items": [{"channel": "test",
            "formats": {"http-response": {"body": body}}}]})
        .to_string()
    };
    let client = Client::new();
    // A long-poll on "test": the handler subscribes.
    let first = tokio::spawn({
        let (client, url) = (client.clone(), hf.url("/grip-instruct"));
        async move { client.get(&url).await.text() }
    });
    let (xpub, msg) = tokio::task::spawn_blocking(move || {
        let msg = xpub.recv_bytes(0).expect("a subscription within 10 s");
        (xpub, msg)
    })
    .await
    .unwrap();
    assert_eq!(msg, b"\x01test");
    assert_eq!(hf.publish(&response_item("one")).await.0, 200);
    assert_eq!(first.await.unwrap(), "one");
    // The client comes back within the linger: the same subscription.
    let second = tokio::spawn({
        let (client, url) = (client.clone(), hf.url("/grip-instruct"));
        async move { client.get(&url).await.text() }
    });
    assert!(
        hf.wait_metric("holdfast_held_sessions", &["mode=\"response\""], 1.0, WAIT)
            .await
    );
    assert_eq!(hf.publish(&response_item("two")).await.0, 200);
    assert_eq!(second.await.unwrap(), "two");
    let answered = Instant::now();
    // Nothing on the subscription until the linger is over: then one
    // unsubscription (no unsubscribe/subscribe pair in between).
    let msg = tokio::task::spawn_blocking(move || {
        xpub.recv_bytes(0).expect("an unsubscription within 10 s")
    })
    .await
    .unwrap();
    assert_eq!(msg, b"\x00test");
    assert!(
        answered.elapsed() >= LINGER - Duration::from_millis(200),
        "unsubscribed after {:?}",
        answered.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_message_hwm_makes_publishers_wait_and_loses_nothing() {
    let (_origin, hf, mut stream) = held("h", "message_hwm", "1").await;
    // 200 publishers at once through a queue of one.
    let publishes: Vec<_> = (0..200)
        .map(|i| {
            let body = stream_item("h", None, &format!("<{i}>\n"));
            let url = hf.publish_url("/publish/");
            tokio::spawn(async move {
                Client::new()
                    .send("POST", &url, &[("Content-Type", "application/json")], body)
                    .await
                    .status
            })
        })
        .collect();
    for publish in publishes {
        assert_eq!(publish.await.unwrap(), 200);
    }
    let total: usize = "open\n".len() + (0..200).map(|i| format!("<{i}>\n").len()).sum::<usize>();
    assert!(stream.read_bytes(total, WAIT).await, "{}", stream.text());
    for i in 0..200 {
        assert!(
            stream.text().contains(&format!("<{i}>")),
            "<{i}> lost\n{}",
            stream.text()
        );
    }
}
