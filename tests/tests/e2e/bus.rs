//! Scale-out on NATS (`[handler] bus_url`): three Holdfast instances on a
//! three-node NATS cluster. What any instance accepts reaches every
//! subscriber on every instance once and in order; items published
//! straight to NATS too; without the bus, publishes are refused (503) and
//! `/health` says why.

use super::scale_out::read_until;
use holdfast_tests::{answer, free_port, Client, Holdfast, NatsCluster, Scripted, Seen};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);

/// A stream hold on the channel the path names (`/ch/<channel>`).
fn stream_hold(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    let channel = seen.path.trim_start_matches("/ch/").to_owned();
    answer(
        200,
        &[
            ("Content-Type", "text/plain"),
            ("Grip-Hold", "stream"),
            ("Grip-Channel", &channel),
        ],
        "initial\n",
    )
}

/// A held stream on raw TCP (thousands of them stay cheap), with what came
/// after the initial body.
async fn hold(addr: &str, channel: &str) -> (TcpStream, Vec<u8>) {
    hold_path(addr, &format!("/ch/{channel}")).await
}

async fn hold_path(addr: &str, path: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, b"initial\n").await;
    let at = seen.windows(8).position(|w| w == b"initial\n").unwrap() + 8;
    (stream, seen.split_off(at))
}

/// The item numbers in a stream's body (`item-<n>` lines, chunked framing
/// and all).
fn item_numbers(body: &[u8]) -> Vec<usize> {
    String::from_utf8_lossy(body)
        .split("item-")
        .skip(1)
        .filter_map(|rest| rest.split('\n').next()?.parse().ok())
        .collect()
}

/// `per_instance` held streams on each instance, the i-th on
/// `channels[i % len]`: (channel index, stream, what followed its initial
/// body).
async fn hold_spread(
    instances: &[Holdfast],
    per_instance: usize,
    channels: &[String],
) -> Vec<(usize, TcpStream, Vec<u8>)> {
    let mut streams = Vec::new();
    for hf in instances {
        let mut tasks = Vec::new();
        for i in 0..per_instance {
            let (addr, channel) = (hf.addr(), i % channels.len());
            let name = channels[channel].clone();
            tasks.push(tokio::spawn(async move {
                let (stream, seen) = hold(&addr, &name).await;
                (channel, stream, seen)
            }));
        }
        for task in tasks {
            streams.push(task.await.unwrap());
        }
    }
    streams
}

/// The publish body of item `k` (`item-<k>`) on channel `k % len`, naming
/// that channel's previous item, which `expected` records.
fn chained(channels: &[String], expected: &mut [Vec<usize>], k: usize) -> String {
    let channel = k % channels.len();
    let mut item = serde_json::json!({"channel": channels[channel], "id": k.to_string(),
        "formats": {"http-stream": {"content": format!("item-{k}\n")}}});
    if let Some(prev) = expected[channel].last() {
        item["prev-id"] = prev.to_string().into();
    }
    expected[channel].push(k);
    serde_json::json!({"items": [item]}).to_string()
}

/// Every stream gets exactly its channel's items, once each, in order.
async fn every_item_once_in_order(
    streams: Vec<(usize, TcpStream, Vec<u8>)>,
    expected: &[Vec<usize>],
    note: &str,
) {
    let mut checks = Vec::new();
    for (channel, mut stream, mut seen) in streams {
        let want = expected[channel].clone();
        checks.push(tokio::spawn(async move {
            let last = format!("item-{}\n", want.last().unwrap());
            read_until(&mut stream, &mut seen, last.as_bytes()).await;
            (item_numbers(&seen), want)
        }));
    }
    for check in checks {
        let (got, want) = check.await.unwrap();
        assert_eq!(got, want, "every item once, in order {note}");
    }
}

async fn instances(nats: &NatsCluster, origin: &Scripted, count: usize) -> Vec<Holdfast> {
    instances_with(nats, &format!("* {}", origin.target()), count, &[]).await
}

/// `count` instances on the bus with `route` and more `[handler]` keys.
async fn instances_with(
    nats: &NatsCluster,
    route: &str,
    count: usize,
    handler: &[(&str, &str)],
) -> Vec<Holdfast> {
    let mut instances = Vec::new();
    for _ in 0..count {
        let mut builder = Holdfast::builder()
            .route(route)
            .set("handler", "bus_url", nats.urls());
        for (key, value) in handler {
            builder = builder.set("handler", key, *value);
        }
        let hf = builder.run().await;
        // Ready does not wait for the bus (an unreachable one is retried
        // while the instance runs, and publishes get 503 meanwhile).
        assert!(
            hf.wait_log("bus (NATS) connected", WAIT).await,
            "{}",
            hf.logs()
        );
        instances.push(hf);
    }
    instances
}

/// Waits until `instances` instances subscribe to each channel (given as
/// subject tokens) and every NATS node knows.
async fn wait_interest(nats: &NatsCluster, channels: &[String], instances: usize) {
    let known = tokio::time::timeout(WAIT, async {
        loop {
            let mut all = true;
            for channel in channels {
                let subject = format!("holdfast.ch.{channel}");
                all &= nats.interest_everywhere(&subject, instances).await;
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(known.is_ok(), "interest never reached every node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_reaches_every_subscriber_on_every_instance_once_in_order() {
    const PER_INSTANCE: usize = 1000;
    const CHANNELS: usize = 10;
    const ITEMS: usize = 200;
    let nats = NatsCluster::start(3).await;
    let origin = Scripted::start(stream_hold).await;
    // An item that comes before its predecessor waits for it this long: a
    // loaded machine can hold a NATS route back for seconds.
    let route = format!("* {}", origin.target());
    let instances = instances_with(&nats, &route, 3, &[("message_wait", "30000")]).await;
    let channels: Vec<String> = (0..CHANNELS).map(|c| format!("news-{c}")).collect();

    let mut streams = hold_spread(&instances, PER_INSTANCE, &channels).await;
    wait_interest(&nats, &channels, 3).await;

    // Item k goes to channel k % 10 through instance k % 3; each channel's
    // items name their predecessor, so order is the publishers' order.
    // A channel's first item names none, so nothing can hold a later one
    // (through another instance, another NATS server) back for it: NATS
    // keeps one publisher's order, not several's. The rest go once every
    // stream has its channel's first.
    let client = Client::new();
    let mut expected: Vec<Vec<usize>> = vec![Vec::new(); CHANNELS];
    for k in 0..ITEMS {
        if k == CHANNELS {
            for (channel, stream, seen) in &mut streams {
                read_until(stream, seen, format!("item-{channel}\n").as_bytes()).await;
            }
        }
        let body = chained(&channels, &mut expected, k);
        let url = instances[k % 3].publish_url("/publish/");
        let reply = client.send("POST", &url, &[], body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    every_item_once_in_order(streams, &expected, "").await;
    let text = client
        .get(&instances[0].publish_url("/metrics"))
        .await
        .text();
    assert!(
        text.contains("holdfast_bus_connected{process=\"handler\""),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_published_straight_to_nats_are_delivered() {
    let nats = NatsCluster::start(3).await;
    let origin = Scripted::start(stream_hold).await;
    let instances = instances(&nats, &origin, 2).await;
    let mut held = Vec::new();
    for hf in &instances {
        held.push(hold(&hf.addr(), "a.b").await);
    }
    // `a.b` is one subject token: `.` is written %2E.
    let subject = "holdfast.ch.a%2Eb";
    wait_interest(&nats, &["a%2Eb".to_owned()], 2).await;
    // An application's own NATS client: plain JSON, the subject names
    // the channel; then Pushpin's `J` framing.
    let publisher = async_nats::connect(nats.url(1)).await.expect("nats client");
    let json = r#"{"formats": {"http-stream": {"content": "item-1\n"}}}"#;
    publisher.publish(subject, json.into()).await.unwrap();
    let framed = r#"J{"formats": {"http-stream": {"content": "item-2\n"}}}"#;
    publisher.publish(subject, framed.into()).await.unwrap();
    // Not an item: dropped, logged and counted; the next one still arrives.
    publisher.publish(subject, "{oops".into()).await.unwrap();
    let last = r#"{"http-stream": {"content": "item-3\n"}}"#;
    publisher.publish(subject, last.into()).await.unwrap();
    publisher.flush().await.unwrap();
    for (mut stream, mut seen) in held {
        read_until(&mut stream, &mut seen, b"item-3\n").await;
        assert_eq!(item_numbers(&seen), vec![1, 2, 3]);
    }
    let client = Client::new();
    let text = client
        .get(&instances[0].publish_url("/metrics"))
        .await
        .text();
    let undecodable =
        holdfast_tests::harness::holdfast::metric(&text, "holdfast_bus_undecodable_total", &[]);
    assert_eq!(undecodable, Some(1.0), "{text}");
    assert!(instances[0].count_log("bus message dropped") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bus_publishes_are_refused_and_health_says_so() {
    // Nothing listens on the bus port yet: the instance starts anyway.
    let port = free_port();
    let origin = Scripted::start(stream_hold).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("handler", "bus_url", format!("nats://127.0.0.1:{port}"))
        .run()
        .await;
    let client = Client::new();
    let body = r#"{"items": [{"channel": "c", "formats": {"http-stream": {"content": "x\n"}}}]}"#;
    let reply = client
        .send("POST", &hf.publish_url("/publish/"), &[], body)
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("bus (NATS) is not connected"),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    let health = client.get(&hf.publish_url("/health")).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["bus"], "disconnected", "{}", health.text());

    // The server comes up on that port: the instance connects by itself,
    // and the same publish goes through to a subscriber.
    let nats = NatsCluster::start_on(&[port]).await;
    // (Healthy also needs every process's first report.)
    let healthy = tokio::time::timeout(WAIT, async {
        loop {
            let health = client.get(&hf.publish_url("/health")).await;
            if health.json()["bus"] == "ok" && health.status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(healthy.is_ok(), "{}", hf.logs());
    let (mut stream, mut seen) = hold(&hf.addr(), "c").await;
    wait_interest(&nats, &["c".to_owned()], 1).await;
    let reply = client
        .send("POST", &hf.publish_url("/publish/"), &[], body)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    read_until(&mut stream, &mut seen, b"x\n").await;
}

/// Publishes `body` through `url`, again while the bus refuses it (503):
/// the item's id makes a retry count once.
async fn publish_until_accepted(client: &Client, url: &str, body: &str) -> usize {
    let mut refused = 0;
    loop {
        let reply = client.send("POST", url, &[], body.to_owned()).await;
        match reply.status {
            200 => return refused,
            503 => {
                refused += 1;
                assert!(refused < 200, "refused for too long: {}", reply.text());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("{other}: {}", reply.text()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_killed_and_restarted_while_publishing_loses_nothing() {
    const PER_INSTANCE: usize = 1000;
    const CHANNELS: usize = 3;
    const ITEMS: usize = 300;
    let mut nats = NatsCluster::start(3).await;
    let origin = Scripted::start(stream_hold).await;
    let stored = [("history_size", "1000"), ("bus_history_replicas", "3")];
    let route = format!("* {}", origin.target());
    let instances = instances_with(&nats, &route, 3, &stored).await;
    let channels: Vec<String> = (0..CHANNELS).map(|c| format!("js-{c}")).collect();
    let streams = hold_spread(&instances, PER_INSTANCE, &channels).await;
    for hf in &instances {
        let reading = hf
            .wait_metric("holdfast_bus_channels_reading", &[], CHANNELS as f64, WAIT)
            .await;
        assert!(reading, "{}", hf.logs());
    }

    // 100 items a second, through the three instances in turn; node 0
    // is killed after a third of them and started again after two thirds.
    let client = Client::new().with_timeout(Duration::from_secs(20));
    let mut expected: Vec<Vec<usize>> = vec![Vec::new(); CHANNELS];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut refused = 0;
    for k in 0..ITEMS {
        tick.tick().await;
        if k == ITEMS / 3 {
            nats.kill(0).await;
        }
        if k == 2 * ITEMS / 3 {
            nats.restart(0).await;
        }
        let body = chained(&channels, &mut expected, k);
        let url = instances[k % 3].publish_url("/publish/");
        refused += publish_until_accepted(&client, &url, &body).await;
    }

    let note = format!("{refused} publishes refused and retried");
    every_item_once_in_order(streams, &expected, &note).await;
}

fn numbered(id: usize) -> String {
    super::history::item("h", id, format!("item-{id}\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_on_another_instance_recovers_from_the_stream() {
    let nats = NatsCluster::start(3).await;
    let origin = Scripted::start(super::history::positioned_hold).await;
    let stored = [("history_size", "100"), ("bus_history_replicas", "3")];
    let route = format!("* {}", origin.target());
    let instances = instances_with(&nats, &route, 2, &stored).await;
    let (a, b) = (&instances[0], &instances[1]);
    let (mut first, mut seen) = hold_path(&a.addr(), "/s").await;
    assert!(
        a.wait_metric("holdfast_bus_channels_reading", &[], 1.0, WAIT)
            .await
    );
    for id in 1..=3 {
        assert_eq!(a.publish(&numbered(id)).await.0, 200);
    }
    read_until(&mut first, &mut seen, b"item-3\n").await;
    drop(first);
    // Nobody listens anywhere now; B never had the channel.
    for id in 4..=6 {
        assert_eq!(b.publish(&numbered(id)).await.0, 200);
    }
    let (mut back, mut seen) = hold_path(&b.addr(), "/s?last=3").await;
    read_until(&mut back, &mut seen, b"item-6\n").await;
    assert!(
        b.wait_metric("holdfast_bus_channels_reading", &[], 1.0, WAIT)
            .await
    );
    assert_eq!(b.publish(&numbered(7)).await.0, 200);
    read_until(&mut back, &mut seen, b"item-7\n").await;
    assert_eq!(item_numbers(&seen), vec![4, 5, 6, 7], "once each, in order");
    // The status page's numbers show the bus and history.
    let snapshot = Client::new()
        .get(&b.publish_url("/_holdfast/snapshot"))
        .await
        .json();
    assert_eq!(snapshot["bus"]["connected"], true, "{snapshot}");
    assert!(snapshot["bus"]["lag_ms"].is_i64(), "{snapshot}");
    assert!(
        snapshot["bus"]["received"].as_u64() >= Some(1),
        "{snapshot}"
    );
    assert!(snapshot["history_items"].is_i64(), "{snapshot}");
    assert!(origin
        .seen()
        .iter()
        .all(|s| s.header("grip-last").is_none()));

    // A position the stream does not have: the origin is asked, as
    // without history.
    let _lost = hold_path(&b.addr(), "/s?last=999").await;
    let asked = origin
        .wait_for(WAIT, |s| s.header("grip-last").is_some())
        .await
        .expect("the origin asked again");
    assert_eq!(asked.header("grip-last").as_deref(), Some("h; last-id=999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_on_another_instance_resumes_from_the_stream() {
    let nats = NatsCluster::start(3).await;
    let origin = Scripted::start(super::history::ws_origin).await;
    let route = format!("* {},over_http", origin.target());
    let instances = instances_with(&nats, &route, 2, &[("history_size", "100")]).await;
    let message = |id: usize| {
        serde_json::json!({"items": [{"channel": "w", "id": id.to_string(),
            "formats": {"ws-message": {"content": format!("m-{id}")}}}]})
        .to_string()
    };
    // Nobody listens: the stream keeps them.
    for id in 1..=3 {
        assert_eq!(instances[0].publish(&message(id)).await.0, 200);
    }
    let b = &instances[1];
    let url = format!("ws://{}/w?last=1", b.addr());
    let stream = TcpStream::connect(b.addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("WebSocket opened");
    use super::history::next_text;
    assert_eq!(next_text(&mut ws).await, "m-2", "{}", b.logs());
    assert_eq!(next_text(&mut ws).await, "m-3");
    assert!(
        b.wait_metric("holdfast_bus_channels_reading", &[], 1.0, WAIT)
            .await
    );
    assert_eq!(instances[0].publish(&message(4)).await.0, 200);
    assert_eq!(next_text(&mut ws).await, "m-4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_protected_bus_needs_the_token() {
    let nats = NatsCluster::start_with(&[free_port()], &["--auth", "s3cret"]).await;
    let origin = Scripted::start(stream_hold).await;
    let with = |token: &str| {
        Holdfast::builder()
            .route(format!("* {}", origin.target()))
            .set("handler", "bus_url", nats.urls())
            .set("handler", "bus_token", token)
    };
    let client = Client::new();
    let body = r#"{"items": [{"channel": "t", "formats": {"http-stream": {"content": "in\n"}}}]}"#;
    // The wrong token: refused by the server, said in the log, publishes 503.
    let wrong = with("nope").run().await;
    assert!(
        wrong.wait_log("bus (NATS)", Duration::from_secs(20)).await,
        "{}",
        wrong.logs()
    );
    let reply = client
        .send("POST", &wrong.publish_url("/publish/"), &[], body)
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let health = client.get(&wrong.publish_url("/health")).await;
    assert_eq!(health.json()["bus"], "disconnected");
    // The right one.
    let right = with("s3cret").run().await;
    let (mut stream, mut seen) = hold(&right.addr(), "t").await;
    wait_interest(&nats, &["t".to_owned()], 1).await;
    let reply = client
        .send("POST", &right.publish_url("/publish/"), &[], body)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    read_until(&mut stream, &mut seen, b"in\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeromq_and_command_socket_publishes_go_over_the_bus() {
    let nats = NatsCluster::start(3).await;
    let origin = Scripted::start(stream_hold).await;
    let instances = instances(&nats, &origin, 2).await;
    let mut held = Vec::new();
    for hf in &instances {
        held.push(hold(&hf.addr(), "test").await);
    }
    wait_interest(&nats, &["test".to_owned()], 2).await;
    // Into the first instance's PULL input, and its second's command socket.
    let (pull, command) = (instances[0].publish_pull_port, instances[1].command_port);
    let reply = tokio::task::spawn_blocking(move || {
        let ctx = zmq::Context::new();
        let push = ctx.socket(zmq::PUSH).unwrap();
        push.connect(&format!("tcp://127.0.0.1:{pull}")).unwrap();
        let item = r#"J{"channel":"test","formats":{"http-stream":{"content":"item-1\n"}}}"#;
        push.send(item, 0).unwrap();
        let req = ctx.socket(zmq::REQ).unwrap();
        req.set_rcvtimeo(10_000).unwrap();
        req.connect(&format!("tcp://127.0.0.1:{command}")).unwrap();
        let publish = b"T110:2:id,1:1,6:method,7:publish,4:args,71:5:items,59:55:7:channel,4:test,11:http-stream,19:7:content,6:item-2,}}]}}";
        req.send(&publish[..], 0).unwrap();
        req.recv_bytes(0).expect("publish answered")
    })
    .await
    .unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert!(reply.contains("7:success,4:true!"), "{reply}");
    for (mut stream, mut seen) in held {
        read_until(&mut stream, &mut seen, b"item-1\n").await;
        read_until(&mut stream, &mut seen, b"item-2").await;
        let text = String::from_utf8_lossy(&seen).into_owned();
        assert_eq!(
            (
                text.matches("item-1\n").count(),
                text.matches("item-2").count()
            ),
            (1, 1),
            "{text}"
        );
    }
}
