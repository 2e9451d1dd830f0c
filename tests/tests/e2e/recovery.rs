//! Sequencing and recovery: prev-id gaps, hints, the recover command and
//! first-subscription updates make Holdfast ask the origin again (a
//! long-poll replays its request with `Grip-Last`, a stream fetches its
//! next link); next links page and follow streams; gone links are told
//! when a client leaves; subscription filters.

use holdfast_tests::{answer, Client, Holdfast, HoldfastBuilder, Scripted, Seen};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Holdfast in front of a scripted origin, without first-subscription
/// updates unless a test wants them (they would recover on their own).
fn in_front_of(origin: &Scripted) -> HoldfastBuilder {
    Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("handler", "update_on_first_subscription", "false")
}

fn item(channel: &str, id: Option<&str>, prev: Option<&str>, formats: serde_json::Value) -> String {
    let mut item = serde_json::json!({"channel": channel, "formats": formats});
    if let Some(id) = id {
        item["id"] = id.into();
    }
    if let Some(prev) = prev {
        item["prev-id"] = prev.into();
    }
    serde_json::json!({ "items": [item] }).to_string()
}

fn response_format(body: &str) -> serde_json::Value {
    serde_json::json!({"http-response": {"body": body}})
}

fn stream_format(content: &str) -> serde_json::Value {
    serde_json::json!({"http-stream": {"content": content}})
}

/// A long-poll origin: holds on `lp` (prev-id 1) until asked with
/// `Grip-Last`, then answers with what it was told.
fn long_poll_origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    match seen.header("grip-last") {
        None => answer(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Grip-Hold", "response"),
                ("Grip-Channel", "lp; prev-id=1"),
                ("Grip-Timeout", "30"),
            ],
            "timed out\n",
        ),
        Some(last) => answer(
            200,
            &[("Content-Type", "text/plain")],
            &format!("recovered {last} body={}\n", seen.body),
        ),
    }
}

async fn held_long_poll(
    hf: &Holdfast,
    origin: &Scripted,
) -> tokio::task::JoinHandle<holdfast_tests::Reply> {
    let url = hf.url("/poll");
    let poll = tokio::spawn(async move {
        Client::new()
            .send("POST", &url, &[("Cookie", "c=1")], "request body")
            .await
    });
    assert!(
        origin.wait_for(WAIT, |s| s.path == "/poll").await.is_some(),
        "{}",
        hf.logs()
    );
    poll
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_with_matching_prev_id_gets_the_item() {
    let origin = Scripted::start(long_poll_origin).await;
    let hf = in_front_of(&origin).arg("--verbose").run().await;
    let poll = held_long_poll(&hf, &origin).await;
    assert!(hf.wait_log("session held", WAIT).await, "{}", hf.logs());
    let body = item("lp", Some("2"), Some("1"), response_format("direct\n"));
    assert_eq!(hf.publish(&body).await.0, 200);
    let reply = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert_eq!(reply.text(), "direct\n");
    assert_eq!(origin.seen().len(), 1, "the origin was not asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_gap_replays_the_request_with_grip_last() {
    let origin = Scripted::start(long_poll_origin).await;
    let hf = in_front_of(&origin).arg("--verbose").run().await;
    let poll = held_long_poll(&hf, &origin).await;
    assert!(hf.wait_log("session held", WAIT).await, "{}", hf.logs());
    // The origin said prev-id 1; an item after 2 means the client missed 2.
    let body = item("lp", Some("3"), Some("2"), response_format("not this\n"));
    let mut body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body["items"][0]["no-seq"] = true.into();
    assert_eq!(hf.publish(&body.to_string()).await.0, 200);
    let reply = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert_eq!(
        reply.text(),
        "recovered lp; last-id=1 body=request body\n",
        "{}",
        hf.logs()
    );
    let retry = &origin.seen()[1];
    assert_eq!(retry.method, "POST");
    assert_eq!(
        retry.header("cookie").as_deref(),
        Some("c=1"),
        "retries replay the client's headers"
    );
    assert!(retry.header("grip-sig").is_some(), "retries are signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_and_recover_ask_the_origin_again() {
    let origin = Scripted::start(long_poll_origin).await;
    let hf = in_front_of(&origin).arg("--verbose").run().await;

    let poll = held_long_poll(&hf, &origin).await;
    assert!(hf.wait_log("session held", WAIT).await, "{}", hf.logs());
    let hint = item(
        "lp",
        None,
        None,
        serde_json::json!({"http-response": {"action": "hint"}}),
    );
    assert_eq!(hf.publish(&hint).await.0, 200);
    let reply = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert!(
        reply.text().starts_with("recovered lp; last-id=1"),
        "{}",
        reply.text()
    );

    let poll = held_long_poll(&hf, &origin).await;
    assert!(
        hf.wait_log_count("session held", 2, WAIT).await,
        "{}",
        hf.logs()
    );
    let reply = Client::new()
        .send("POST", &hf.publish_url("/recover"), &[], "")
        .await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "Updated\n"));
    let reply = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert!(
        reply.text().starts_with("recovered lp; last-id=1"),
        "{}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_subscription_update_asks_again_a_second_later() {
    let origin = Scripted::start(long_poll_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let poll = held_long_poll(&hf, &origin).await;
    let reply = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert!(
        reply.text().starts_with("recovered lp; last-id=1"),
        "{}",
        reply.text()
    );
}

/// A stream origin with a next link: `/s` starts (channel `st`, prev-id 5),
/// `/s/next` answers with what it missed and a fresh hold.
fn stream_origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    let hold = |prev: &str, body: &str| {
        answer(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", &format!("st; prev-id={prev}")),
                ("Grip-Link", "</s/next>; rel=next; timeout=60"),
                ("Grip-Link", "</s/gone>; rel=gone"),
            ],
            body,
        )
    };
    match seen.path.as_str() {
        "/s" => hold("5", "start\n"),
        "/s/next" => hold("8", "seven\neight\n"),
        "/s/gone" => answer(200, &[], ""),
        _ => answer(404, &[], "no\n"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_gap_fetches_the_next_link_and_goes_on() {
    let origin = Scripted::start(stream_origin).await;
    let hf = in_front_of(&origin).run().await;
    let client = Client::new();
    let mut stream = client.open(&hf.url("/s")).await;
    assert!(stream.read_until("start\n", WAIT).await);

    let six = item("st", Some("6"), Some("5"), stream_format("six\n"));
    assert_eq!(hf.publish(&six).await.0, 200);
    assert!(stream.read_until("six\n", WAIT).await, "{}", stream.text());
    // 7 is lost; 8 reveals the gap.
    let mut eight: serde_json::Value =
        serde_json::from_str(&item("st", Some("8"), Some("7"), stream_format("EIGHT\n"))).unwrap();
    eight["items"][0]["no-seq"] = true.into();
    assert_eq!(hf.publish(&eight.to_string()).await.0, 200);
    assert!(
        stream.read_until("eight\n", WAIT).await,
        "{}\n{}",
        stream.text(),
        hf.logs()
    );
    let next = origin
        .wait_for(WAIT, |s| s.path == "/s/next")
        .await
        .unwrap();
    assert_eq!(next.all("grip-last"), ["st; last-id=6"]);
    assert_eq!(next.method, "GET");
    assert!(
        next.header("grip-sig").is_some(),
        "link requests are signed"
    );

    let nine = item("st", Some("9"), Some("8"), stream_format("nine\n"));
    assert_eq!(hf.publish(&nine).await.0, 200);
    assert!(stream.read_until("nine\n", WAIT).await, "{}", stream.text());
    assert_eq!(stream.text(), "start\nsix\nseven\neight\nnine\n");

    drop(stream);
    let gone = origin.wait_for(WAIT, |s| s.path == "/s/gone").await;
    assert_eq!(gone.map(|g| g.method), Some("POST".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stream_follows_its_next_link_without_client_headers() {
    let origin = Scripted::start(|seen: &Seen| {
        let n: u32 = seen
            .path
            .strip_prefix("/feed?page=")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        answer(
            200,
            &[
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "feed"),
                (
                    "Grip-Link",
                    &format!("</feed?page={}>; rel=next; timeout=1", n + 1),
                ),
            ],
            &format!("page {n}\n"),
        )
    })
    .await;
    let hf = in_front_of(&origin).run().await;
    let client = Client::new();
    let mut stream = client.open(&hf.url("/feed")).await;
    assert!(
        stream.read_until("page 2\n", WAIT).await,
        "{}",
        stream.text()
    );
    assert!(stream.text().starts_with("page 0\npage 1\npage 2\n"));
    let link = origin
        .wait_for(WAIT, |s| s.path == "/feed?page=1")
        .await
        .unwrap();
    assert!(link.header("grip-feature").is_some());
    assert!(link.header("x-forwarded-for").is_some() || link.header("grip-sig").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_without_a_hold_pages_until_the_last_page() {
    let origin = Scripted::start(|seen: &Seen| match seen.path.as_str() {
        "/history" => answer(200, &[("Grip-Link", "</history/2>; rel=next")], "p1\n"),
        "/history/2" => answer(200, &[("Grip-Link", "</history/3>; rel=next")], "p2\n"),
        _ => answer(200, &[], "p3\n"),
    })
    .await;
    let hf = in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/history")).await;
    assert_eq!(stream.status, 200);
    assert!(stream.read_to_end(WAIT).await, "{}", stream.text());
    assert_eq!(stream.text(), "p1\np2\np3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_link_answering_an_error_ends_the_stream() {
    let origin = Scripted::start(|seen: &Seen| match seen.path.as_str() {
        "/s" => answer(
            200,
            &[
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "x"),
                ("Grip-Link", "</broken>; rel=next; timeout=1"),
            ],
            "s\n",
        ),
        _ => answer(500, &[], "boom\n"),
    })
    .await;
    let hf = in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/s")).await;
    // An error status is an answer, not a failure to connect: the stream ends.
    assert!(stream.read_to_end(WAIT).await, "{}", stream.text());
    assert_eq!(stream.text(), "s\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_prev_id_without_next_link_is_refused() {
    let origin = Scripted::start(|_: &Seen| {
        answer(
            200,
            &[("Grip-Hold", "stream"), ("Grip-Channel", "c; prev-id=1")],
            "x",
        )
    })
    .await;
    let hf = in_front_of(&origin).run().await;
    let reply = Client::new().get(&hf.url("/")).await;
    assert_eq!(reply.status, 502);
    assert!(
        hf.wait_log("needs a Grip-Link rel=next", WAIT).await,
        "{}",
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_missed_an_item_without_a_next_link_ends_instead_of_going_silent() {
    let origin = Scripted::start(|_: &Seen| {
        answer(
            200,
            &[("Grip-Hold", "stream"), ("Grip-Channel", "plain")],
            "start\n",
        )
    })
    .await;
    let hf = in_front_of(&origin)
        .set("handler", "message_wait", "200")
        .run()
        .await;
    let mut stream = Client::new().open(&hf.url("/")).await;
    assert!(stream.read_until("start\n", WAIT).await);
    let one = item("plain", Some("1"), None, stream_format("one\n"));
    assert_eq!(hf.publish(&one).await.0, 200);
    assert!(stream.read_until("one\n", WAIT).await, "{}", stream.text());
    // 2 is lost; 3 reveals the gap once its wait for 2 is over. Nothing
    // can fetch 2 (no next link): the stream ends where it was, so the
    // client comes back from there, rather than staying open with every
    // later item dropped.
    let three = item("plain", Some("3"), Some("2"), stream_format("three\n"));
    assert_eq!(hf.publish(&three).await.0, 200);
    assert!(
        stream.read_to_end(WAIT).await,
        "{}\n{}",
        stream.text(),
        hf.logs()
    );
    assert_eq!(stream.text(), "start\none\n");
    assert!(
        hf.wait_metric("holdfast_sessions_ended_on_gap_total", &[], 1.0, WAIT)
            .await,
        "the ending is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_and_content_filters() {
    let origin = Scripted::start(|_: &Seen| {
        answer(
            200,
            &[
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "chat; filter=skip-self; filter=var-subst"),
                ("Grip-Set-Meta", "user=alice, greeting=\"hello, alice\""),
            ],
            "open\n",
        )
    })
    .await;
    let hf = in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/chat")).await;
    assert!(stream.read_until("open\n", WAIT).await);
    let publish = |sender: &str, content: &str| {
        serde_json::json!({"items": [{"channel": "chat", "meta": {"sender": sender},
            "formats": {"http-stream": {"content": content}}}]})
        .to_string()
    };
    assert_eq!(hf.publish(&publish("alice", "own echo\n")).await.0, 200);
    assert_eq!(
        hf.publish(&publish("bob", "%(greeting)s from bob\n"))
            .await
            .0,
        200
    );
    assert!(
        stream.read_until("from bob\n", WAIT).await,
        "{}",
        stream.text()
    );
    assert_eq!(stream.text(), "open\nhello, alice from bob\n");
}
