//! Chaining through a caching CDN: clients -> Holdfast -> Varnish (the
//! repository's VCL) -> origin. GRIP instructions cached by Varnish hold
//! new clients without the origin, also while it is down.

use holdfast_tests::{answer, Client, Holdfast, Scripted, Seen, Varnish};
use std::time::Duration;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);

/// The origin: `/counter` is an SSE stream hold on channel `counter`,
/// `/poll` a long-poll on `poll` (5 s), both cacheable for 10 minutes;
/// `/tagged` a stream hold tagged `Surrogate-Key: counters`.
fn cdn_origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    match seen.path.as_str() {
        "/counter" => answer(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "counter"),
                ("Cache-Control", "s-maxage=600"),
            ],
            "event: message\ndata: 1\n\n",
        ),
        "/poll" => answer(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Grip-Hold", "response"),
                ("Grip-Channel", "poll"),
                ("Grip-Timeout", "5"),
                ("Cache-Control", "s-maxage=600"),
            ],
            "nothing new\n",
        ),
        "/tagged" => answer(
            200,
            &[
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "tagged"),
                ("Surrogate-Control", "max-age=600"),
                ("Cache-Control", "no-cache"),
                ("Surrogate-Key", "counters tagged"),
            ],
            "tagged\n",
        ),
        _ => answer(404, &[], "no\n"),
    }
}

fn stream_item(channel: &str, content: &str) -> String {
    serde_json::json!({"items": [{"channel": channel,
        "formats": {"http-stream": {"content": content}}}]})
    .to_string()
}

fn origin_hits(origin: &Scripted, path: &str) -> usize {
    origin.seen().iter().filter(|s| s.path == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_holds_from_the_cache_need_no_origin() {
    let origin = Scripted::start(cdn_origin).await;
    let varnish = Varnish::start(&origin.target()).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", varnish.target()))
        .run()
        .await;
    let client = Client::new();
    let mut first = client.open(&hf.url("/counter")).await;
    let mut second = client.open(&hf.url("/counter")).await;
    for stream in [&mut first, &mut second] {
        assert_eq!(stream.status, 200, "{}", hf.logs());
        assert!(
            stream.read_until("data: 1\n\n", WAIT).await,
            "{}",
            stream.text()
        );
        let names: Vec<&str> = stream.headers.keys().map(|k| k.as_str()).collect();
        assert!(
            names.iter().all(|n| !n.starts_with("grip-")),
            "cached GRIP headers reach the client: {names:?}"
        );
        assert!(
            stream.headers.get("age").is_none(),
            "a live stream has no age: {:?}",
            stream.headers
        );
    }
    assert_eq!(first.headers["x-cache"], "MISS");
    assert_eq!(second.headers["x-cache"], "HIT");
    assert_eq!(
        origin_hits(&origin, "/counter"),
        1,
        "the second client came from cache"
    );

    assert_eq!(
        hf.publish(&stream_item("counter", "data: 2\n\n")).await.0,
        200
    );
    for stream in [&mut first, &mut second] {
        assert!(
            stream.read_until("data: 2\n\n", WAIT).await,
            "{}",
            stream.text()
        );
    }

    // The origin goes away: new clients still get the cached start and
    // live updates.
    drop(origin);
    let mut third = client.open(&hf.url("/counter")).await;
    assert_eq!(third.status, 200);
    assert!(
        third.read_until("data: 1\n\n", WAIT).await,
        "{}",
        third.text()
    );
    assert_eq!(
        hf.publish(&stream_item("counter", "data: 3\n\n")).await.0,
        200
    );
    for stream in [&mut first, &mut second, &mut third] {
        assert!(
            stream.read_until("data: 3\n\n", WAIT).await,
            "{}",
            stream.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_holds_from_the_cache_get_publishes_and_time_out() {
    let origin = Scripted::start(cdn_origin).await;
    let varnish = Varnish::start(&origin.target()).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", varnish.target()))
        .arg("--loglevel")
        .arg("2,handler:3")
        .run()
        .await;
    let mut polls = Vec::new();
    for _ in 0..2 {
        let url = hf.url("/poll");
        polls.push(tokio::spawn(async move { Client::new().get(&url).await }));
    }
    // Both are held (no answer yet) until the publish.
    assert!(
        hf.wait_log_count("session held", 2, WAIT).await,
        "{}",
        hf.logs()
    );
    let item = serde_json::json!({"items": [{"channel": "poll",
        "formats": {"http-response": {"body": "news\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    for poll in polls {
        let reply = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
        assert_eq!(reply.text(), "news\n");
    }
    assert_eq!(origin_hits(&origin, "/poll"), 1);
    // A cached hold times out after its own Grip-Timeout, with the
    // origin's answer as it was cached.
    let asked = Instant::now();
    let mut poll = Client::new().open(&hf.url("/poll")).await;
    assert!(poll.read_to_end(Duration::from_secs(15)).await);
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(12),
        "timed out after {waited:?}"
    );
    assert_eq!(poll.text(), "nothing new\n");
    assert_eq!(poll.headers["x-cache"], "HIT");
    assert!(poll.headers.get("age").is_none(), "{:?}", poll.headers);
    assert!(poll
        .headers
        .keys()
        .all(|k| !k.as_str().starts_with("grip-")));
    assert_eq!(origin_hits(&origin, "/poll"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varnish_purges_by_url_and_by_surrogate_key() {
    let origin = Scripted::start(cdn_origin).await;
    let varnish = Varnish::start(&origin.target()).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", varnish.target()))
        .run()
        .await;
    let client = Client::new();
    let open = |path: &'static str| {
        let (client, url) = (client.clone(), hf.url(path));
        async move {
            let mut s = client.open(&url).await;
            assert!(s.read_until("\n", WAIT).await);
            s.headers["x-cache"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(open("/counter").await, "MISS");
    assert_eq!(open("/counter").await, "HIT");
    // Varnish keys objects by URL and Host; Holdfast passes the client's
    // Host on, so a purge names that one.
    let host = format!("127.0.0.1:{}", hf.port);
    let purge = |extra: Option<(&'static str, &'static str)>, path: &'static str| {
        let url = format!("http://{}{path}", varnish.target());
        let (client, host) = (client.clone(), host.clone());
        async move {
            let mut headers = vec![("host", host.as_str())];
            headers.extend(extra);
            client.send("PURGE", &url, &headers, Vec::new()).await
        }
    };
    let reply = purge(None, "/counter").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(open("/counter").await, "MISS");
    assert_eq!(origin_hits(&origin, "/counter"), 2);

    // Surrogate-Control wins over Cache-Control: no-cache; Surrogate-Key
    // tags the object for xkey purges.
    assert_eq!(open("/tagged").await, "MISS");
    assert_eq!(open("/tagged").await, "HIT");
    let reply = purge(Some(("xkey-purge", "counters")), "/").await;
    assert!(
        reply.text().contains("Purged 1 objects"),
        "{}",
        reply.text()
    );
    assert_eq!(open("/tagged").await, "MISS");
    assert_eq!(open("/counter").await, "HIT", "other objects stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_background_refresh_keeps_the_stale_copy_and_surrogate_headers_stay_in_varnish() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let origin = Scripted::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            return answer(500, &[], "broken\n");
        }
        answer(
            200,
            &[
                ("Surrogate-Control", "max-age=1"),
                ("Surrogate-Key", "page"),
            ],
            "v1\n",
        )
    })
    .await;
    let varnish = Varnish::start(&origin.target()).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", varnish.target()))
        .run()
        .await;
    let client = Client::new();
    let first = client.get(&hf.url("/page")).await;
    assert_eq!(first.text(), "v1\n");
    for name in ["surrogate-key", "surrogate-control", "xkey"] {
        assert_eq!(first.header(name), None, "{name} reached the client");
    }
    // Fresh for a second: wait that out (time passing is the event).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    failing.store(true, Ordering::SeqCst);
    // Stale: served while Varnish refreshes it in the background, which
    // fails; the stale copy keeps serving.
    assert_eq!(client.get(&hf.url("/page")).await.text(), "v1\n");
    assert!(origin
        .wait_for(WAIT, |_| origin.seen().len() >= 2)
        .await
        .is_some());
    for _ in 0..3 {
        let reply = client.get(&hf.url("/page")).await;
        assert_eq!((reply.status, reply.text().as_str()), (200, "v1\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varnish_does_not_cache_for_clients_that_bypass_holdfast() {
    let origin = Scripted::start(cdn_origin).await;
    let varnish = Varnish::start(&origin.target()).await;
    let client = Client::new();
    let url = format!("http://{}/counter", varnish.target());
    for _ in 0..2 {
        let reply = client.get(&url).await;
        assert_eq!(reply.header("x-cache"), Some("MISS"));
    }
    assert_eq!(origin_hits(&origin, "/counter"), 2);
}
