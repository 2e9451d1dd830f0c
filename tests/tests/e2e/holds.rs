//! GRIP holds: the origin asks to hold, the handler takes the session over,
//! and publishes reach the client.

use holdfast_tests::{answer, Client, Holdfast, OpenStream, Origin, Scripted};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn stream_item(channel: &str, content: &str) -> String {
    serde_json::json!({"items": [{"channel": channel, "formats": {"http-stream": {"content": content}}}]}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_hold_receives_publishes_until_closed() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert_eq!(stream.status, 200);
    assert!(
        stream
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("grip-")),
        "{:?}",
        stream.headers
    );
    assert!(stream.headers.get("content-length").is_none());
    assert!(
        stream.read_until("initial\n", WAIT).await,
        "{}",
        stream.text()
    );

    assert_eq!(
        hf.publish(&stream_item("test", "hello\n")).await,
        (200, "Published\n".into())
    );
    assert!(
        stream.read_until("hello\n", WAIT).await,
        "{}\n{}",
        stream.text(),
        hf.logs()
    );
    assert_eq!(
        hf.publish(&stream_item("other", "not for us\n")).await.0,
        200
    );
    assert_eq!(hf.publish(&stream_item("test", "again\n")).await.0, 200);
    assert!(stream.read_until("again\n", WAIT).await);
    assert!(!stream.text().contains("not for us"));

    let close = serde_json::json!({"items": [{"channel": "test", "formats": {"http-stream": {"action": "close"}}}]});
    assert_eq!(hf.publish(&close.to_string()).await.0, 200);
    assert!(stream.read_to_end(WAIT).await, "stream did not end");
    assert_eq!(stream.text(), "initial\nhello\nagain\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publish_reaches_every_subscriber() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();
    let mut streams = Vec::new();
    for _ in 0..25 {
        let mut stream = client.open(&hf.url("/grip")).await;
        assert!(stream.read_until("initial\n", WAIT).await);
        streams.push(stream);
    }
    assert_eq!(hf.publish(&stream_item("test", "to all\n")).await.0, 200);
    for stream in &mut streams {
        assert!(
            stream.read_until("to all\n", WAIT).await,
            "{}",
            stream.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_gets_the_published_response() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .arg("--loglevel")
        .arg("2,handler:3")
        .run()
        .await;
    let url = hf.url("/grip-instruct");
    let waiting = tokio::spawn(async move { Client::new().get(&url).await });
    assert!(hf.wait_log("session held", WAIT).await, "{}", hf.logs());
    let item = serde_json::json!({"items": [{"channel": "test", "formats": {"http-response": {"code": 201, "headers": {"X-Published": "yes"}, "body": "published\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    let reply = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (201, "published\n"));
    assert_eq!(reply.header("x-published"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_times_out_with_the_origin_response() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let started = tokio::time::Instant::now();
    let reply = Client::new().get(&hf.url("/grip/hold-timeout")).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "timed out\n"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert!(reply
        .headers
        .keys()
        .all(|k| !k.as_str().starts_with("grip-")));
    // Grip-Timeout: 1 is raised to the 5 s minimum.
    assert!(
        started.elapsed() >= Duration::from_millis(4500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_keep_alive_is_sent() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/grip/keep-alive")).await;
    assert!(stream.read_until("open\n", WAIT).await);
    assert!(
        stream.read_until("ping\nping\n", WAIT).await,
        "{:?}",
        stream.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_publish_reaches_the_stream() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH).unwrap();
    push.connect(&format!("tcp://127.0.0.1:{}", hf.publish_pull_port))
        .unwrap();
    push.send(
        r#"J{"channel":"test","formats":{"http-stream":{"content":"over zmq\n"}}}"#,
        0,
    )
    .unwrap();
    assert!(
        stream.read_until("over zmq\n", WAIT).await,
        "{}",
        stream.text()
    );
    // A TNetString item too.
    let tnet = b"T58:7:channel,4:test,11:http-stream,22:7:content,9:tnetstr!\n,}}";
    push.send(&tnet[..], 0).unwrap();
    assert!(
        stream.read_until("tnetstr!\n", WAIT).await,
        "{}",
        stream.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publishes_are_refused_with_a_reason() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();
    let cases = [
        ("{", 400, "Body is not valid JSON"),
        (
            "[]",
            400,
            "Invalid format: expected an object with an \"items\" list",
        ),
        (
            r#"{"items":[{"formats":{"http-stream":{"content":"x"}}}]}"#,
            400,
            "item 0: missing \"channel\"",
        ),
        (
            r#"{"items":[{"channel":"c","http-stream":{"content-bin":"***"}}]}"#,
            400,
            "http-stream.content-bin: must be base64",
        ),
        (
            r#"{"items":[{"channel":"c","http-response":{"code":0}}]}"#,
            400,
            "item 0: http-response.code: must be a status code from 100 to 599",
        ),
        (
            r#"{"items":[{"channel":"c","http-stream":{"content":"x"}},{"channel":"c","http-response":{"code":99}}]}"#,
            400,
            "item 1: http-response.code: must be a status code from 100 to 599",
        ),
        (
            r#"{"items":[{"channel":"c","http-response":{"reason":"OK\r\nX: 1"}}]}"#,
            400,
            "item 0: http-response.reason: must be one line of visible text",
        ),
        (
            r#"{"items":[{"channel":"c","http-response":{"headers":{"Bad Name":"1"}}}]}"#,
            400,
            "item 0: http-response.headers: \"Bad Name\" is not a valid header name",
        ),
        (
            r#"{"items":[{"channel":"c","http-response":{"headers":{"X-A":"1\r\nX-B: 2"}}}]}"#,
            400,
            "item 0: http-response.headers: \"X-A\" has a value with a control character",
        ),
    ];
    for (body, status, text) in cases {
        let (got, reply) = hf.publish(body).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(reply.contains(text), "{body}: {reply}");
    }
    let reply = client.get(&hf.publish_url("/publish/")).await;
    assert_eq!((reply.status, reply.header("allow")), (405, Some("POST")));
    assert_eq!(client.get(&hf.publish_url("/nowhere")).await.status, 404);
    let big = format!(
        r#"{{"items":[{{"channel":"c","http-stream":{{"content":"{}"}}}}]}}"#,
        "x".repeat(1_100_000)
    );
    assert_eq!(hf.publish(&big).await.0, 413);
    let reply = client
        .send(
            "POST",
            &hf.publish_url("/publish"),
            &[("Accept", "application/json")],
            stream_item("c", "x"),
        )
        .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "{\"message\": \"Published\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_of_too_many_items_is_refused_before_it_costs_memory() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    // 15,000 small items, 0.85 MB: under the body limit, over the item limit.
    let item = r#"{"channel":"c","http-stream":{"content":"x"}}"#;
    let body = format!(r#"{{"items":[{}]}}"#, vec![item; 15_000].join(","));
    assert!(body.len() < 1_000_000);
    let before = hf.rss_kib(Some("holdfast-handler"));
    for _ in 0..3 {
        let (status, reply) = hf.publish(&body).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply.contains("more than 1000 items"), "{reply}");
    }
    let grown = hf.rss_kib(Some("holdfast-handler")).saturating_sub(before);
    // The body itself is read whole (1 MB); a tree of 15,000 items was
    // 60 MB more.
    assert!(grown < 12 * 1024, "the handler grew by {grown} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_sub_follows_interest_and_delivers() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let ctx = zmq::Context::new();
    let xpub = ctx.socket(zmq::XPUB).unwrap();
    xpub.set_rcvtimeo(10_000).unwrap();
    xpub.connect(&format!("tcp://127.0.0.1:{}", hf.publish_sub_port))
        .unwrap();
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);
    // The handler subscribes to "test" once a session listens on it.
    let subscription = tokio::task::spawn_blocking(move || {
        let msg = xpub.recv_bytes(0).expect("a subscription within 10 s");
        (xpub, msg)
    });
    let (xpub, msg) = subscription.await.unwrap();
    assert_eq!(msg, b"\x01test");
    xpub.send_multipart(
        [
            &b"test"[..],
            br#"J{"formats":{"http-stream":{"content":"via sub\n"}}}"#,
        ],
        0,
    )
    .unwrap();
    assert!(
        stream.read_until("via sub\n", WAIT).await,
        "{}",
        stream.text()
    );
    drop(stream);
    // When the last session leaves, the handler unsubscribes.
    let unsubscribed = tokio::task::spawn_blocking(move || {
        xpub.recv_bytes(0).expect("an unsubscription within 10 s")
    });
    assert_eq!(unsubscribed.await.unwrap(), b"\x00test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_socket_publishes_and_reports_uris() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);
    let port = hf.command_port;
    let (publish_reply, uris_reply) = tokio::task::spawn_blocking(move || {
        let ctx = zmq::Context::new();
        let req = ctx.socket(zmq::REQ).unwrap();
        req.set_rcvtimeo(10_000).unwrap();
        req.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
        let publish = b"T110:2:id,1:1,6:method,7:publish,4:args,71:5:items,59:55:7:channel,4:test,11:http-stream,19:7:content,6:by cmd,}}]}}";
        req.send(&publish[..], 0).unwrap();
        let publish_reply = req.recv_bytes(0).expect("publish answered");
        req.send(&b"T34:2:id,1:2,6:method,12:get-zmq-uris,}"[..], 0).unwrap();
        (publish_reply, req.recv_bytes(0).expect("uris answered"))
    })
    .await
    .unwrap();
    let publish_reply = String::from_utf8_lossy(&publish_reply).into_owned();
    assert!(
        publish_reply.contains("7:success,4:true!"),
        "{publish_reply}"
    );
    assert!(stream.read_until("by cmd", WAIT).await, "{}", stream.text());
    let uris = String::from_utf8_lossy(&uris_reply).into_owned();
    assert!(
        uris.contains(&format!("tcp://127.0.0.1:{}", hf.publish_pull_port)),
        "{uris}"
    );
    assert!(uris.contains("publish-sub"), "{uris}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_without_stalling_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut fast = Client::new().open(&hf.url("/grip")).await;
    assert!(fast.read_until("initial\n", WAIT).await);
    let mut slow = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    slow.write_all(b"GET /grip HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let n = slow.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // The slow client now reads nothing. 64 KiB items fill its socket, then
    // connmgr's window, then the handler's 100-item queue.
    let chunk = "x".repeat(65536);
    let mut sent = 0;
    while hf.count_log("client too slow") == 0 {
        assert!(
            sent < 1000,
            "never disconnected after {sent} items\n{}",
            hf.logs()
        );
        let item = stream_item("test", &format!("{sent:06}{chunk}\n"));
        assert_eq!(hf.publish(&item).await.0, 200);
        sent += 1;
        // The fast client keeps up, item by item.
        assert!(
            fast.read_until(&format!("{:06}", sent - 1), WAIT).await,
            "fast client stalled at {sent}"
        );
        fast.received.clear();
    }
    // The slow client's connection is closed once what was buffered drains.
    let mut sink = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match slow.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "slow client never closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_ordered_by_prev_id_and_duplicates_dropped() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);
    let item = |id: &str, prev: Option<&str>, content: &str| {
        let mut item = serde_json::json!({"channel": "test", "id": id, "formats": {"http-stream": {"content": content}}});
        if let Some(prev) = prev {
            item["prev-id"] = prev.into();
        }
        serde_json::json!({"items": [item]}).to_string()
    };
    assert_eq!(hf.publish(&item("1", None, "one\n")).await.0, 200);
    assert!(stream.read_until("one\n", WAIT).await);
    // Three arrives before two: it waits for two, then both go out in order.
    assert_eq!(hf.publish(&item("3", Some("2"), "three\n")).await.0, 200);
    assert_eq!(hf.publish(&item("2", Some("1"), "two\n")).await.0, 200);
    assert!(
        stream.read_until("three\n", WAIT).await,
        "{}",
        stream.text()
    );
    // A repeated id is dropped; the next item shows nothing slipped in.
    assert_eq!(
        hf.publish(&item("2", Some("1"), "two again\n")).await.0,
        200
    );
    assert_eq!(hf.publish(&item("4", Some("3"), "four\n")).await.0, 200);
    assert!(stream.read_until("four\n", WAIT).await);
    assert_eq!(stream.text(), "initial\none\ntwo\nthree\nfour\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_hold_with_a_large_initial_body_streams_it_then_the_publishes() {
    const SIZE: usize = 3 << 20;
    let initial: String = (0..SIZE).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let expected = initial.clone();
    let origin = Scripted::start(move |_| {
        answer(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "big"),
            ],
            &initial,
        )
    })
    .await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let mut stream = Client::new().open(&hf.url("/")).await;
    assert_eq!(stream.status, 200, "{}", hf.logs());
    assert!(stream.headers.get("content-length").is_none());
    assert!(
        stream.read_bytes(SIZE, WAIT).await,
        "{} bytes\n{}",
        stream.received.len(),
        hf.logs()
    );
    assert!(
        stream.received == expected.as_bytes(),
        "the initial body, whole"
    );
    // The subscription starts once the body has passed.
    assert!(
        hf.wait_metric("holdfast_subscriptions", &[], 1.0, WAIT)
            .await,
        "{}",
        hf.logs()
    );
    for text in ["one\n", "two\n"] {
        assert_eq!(hf.publish(&stream_item("big", text)).await.0, 200);
    }
    assert!(stream.read_until("two\n", WAIT).await, "{}", hf.logs());
    assert_eq!(&stream.received[SIZE..], b"one\ntwo\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_api_can_require_credentials() {
    use base64::Engine;
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("handler", "push_in_http_basic_auth", "pub:secret")
        .set("handler", "push_in_http_jwt_key", "publish-key")
        .run()
        .await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);
    let client = Client::new();
    let url = hf.publish_url("/publish/");
    let body = stream_item("test", "authorised\n");
    let reply = client.send("POST", &url, &[], body.clone()).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(reply.text().contains("Unauthorized"));
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("pub:wrong")
    );
    assert_eq!(
        client
            .send(
                "POST",
                &url,
                &[("Authorization", wrong.as_str())],
                body.clone()
            )
            .await
            .status,
        401
    );
    let claims = serde_json::json!({"iss": "app", "exp": 4_000_000_000u64});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"publish-key"),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        client
            .send(
                "POST",
                &url,
                &[("Authorization", bearer.as_str())],
                body.clone()
            )
            .await
            .status,
        200
    );
    assert!(stream.read_until("authorised\n", WAIT).await);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("pub:secret")
    );
    assert_eq!(
        client
            .send(
                "POST",
                &url,
                &[("Authorization", basic.as_str())],
                stream_item("test", "basic\n")
            )
            .await
            .status,
        200
    );
    assert!(stream.read_until("basic\n", WAIT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_tokens_with_bad_times_are_refused_with_a_reason() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("handler", "push_in_http_jwt_key", "publish-key")
        .run()
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let client = Client::new();
    let url = hf.publish_url("/publish/");
    let publish = |claims: serde_json::Value| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"publish-key"),
        )
        .unwrap();
        let (client, url) = (client.clone(), url.clone());
        async move {
            let bearer = format!("Bearer {token}");
            let body = stream_item("test", "x\n");
            client
                .send("POST", &url, &[("Authorization", bearer.as_str())], body)
                .await
        }
    };
    let refused = [
        (
            serde_json::json!({"iss": "app", "exp": now - 30}),
            "expired",
        ),
        (
            serde_json::json!({"iss": "app", "exp": -1}),
            "\"exp\" must be a number",
        ),
        (
            serde_json::json!({"iss": "app", "exp": "1000"}),
            "\"exp\" must be a number",
        ),
        (
            serde_json::json!({"iss": "app", "nbf": now + 60}),
            "not valid for another",
        ),
    ];
    for (claims, reason) in refused {
        let reply = publish(claims.clone()).await;
        assert_eq!(reply.status, 401, "{claims}: {}", reply.text());
        assert!(reply.text().contains(reason), "{claims}: {}", reply.text());
    }
    let reply = publish(serde_json::json!({"iss": "app", "exp": now + 60})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Holdfast in front of an origin that answers every request with a
/// stream hold carrying `headers` (besides `Grip-Hold: stream`) and the
/// initial body `initial\n`, and a client holding `/` open past it.
async fn held_with(headers: Vec<(&'static str, String)>) -> (Scripted, Holdfast, OpenStream) {
    let origin = Scripted::start(move |_| {
        let mut all = vec![("Grip-Hold", "stream")];
        all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
        answer(200, &all, "initial\n")
    })
    .await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let mut stream = Client::new().open(&hf.url("/")).await;
    assert!(stream.read_until("initial\n", WAIT).await, "{}", hf.logs());
    (origin, hf, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_names_in_headers_may_be_utf8() {
    // The origin names the channel in the header, as UTF-8 bytes; a
    // publish to that name reaches the client (other bytes are refused:
    // see the grip crate's unit tests).
    let (_origin, hf, mut stream) = held_with(vec![("Grip-Channel", "café".into())]).await;
    assert_eq!(
        hf.publish(&stream_item("café", "au lait\n")).await,
        (200, "Published\n".into())
    );
    assert!(
        stream.read_until("initial\nau lait\n", WAIT).await,
        "{:?}\n{}",
        stream.text(),
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_larger_than_the_window_is_sent_in_pieces() {
    // 60,000 bytes of keep-alive data, every second, through a client window
    // of 8 KiB (client_buffer_size): it used to be skipped, silently.
    let data = "k".repeat(60_000);
    let (_origin, hf, mut stream) = held_with(vec![
        ("Grip-Channel", "quiet".into()),
        ("Grip-Keep-Alive", format!("{data}; timeout=1")),
    ])
    .await;
    let expected = format!("initial\n{data}");
    assert!(
        stream.read_until(&expected, WAIT).await,
        "{} bytes read\n{}",
        stream.text().len(),
        hf.logs()
    );
}
