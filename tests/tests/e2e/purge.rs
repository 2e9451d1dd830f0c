//! Purge + publish: items with `purge` clear the caches (Varnish, the
//! built-in edge cache, Fastly's API) before they are delivered, paced per
//! channel; a failing purge never holds delivery back for long.

use holdfast_tests::{answer, Client, Holdfast, Scripted, Seen, Varnish};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);

/// A counter origin: `/counter` is an SSE stream hold on `counter` whose
/// initial event carries the current value, cacheable and tagged
/// `counters`.
async fn counter_origin() -> (Scripted, Arc<AtomicUsize>) {
    let value = Arc::new(AtomicUsize::new(1));
    let v = value.clone();
    let origin = Scripted::start(move |seen: &Seen| {
        if seen.path != "/counter" {
            return answer(404, &[], "no\n");
        }
        answer(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "counter"),
                ("Surrogate-Control", "max-age=600"),
                ("Surrogate-Key", "counters"),
            ],
            &format!("data: {}\n\n", v.load(Ordering::SeqCst)),
        )
    })
    .await;
    (origin, value)
}

fn item(content: &str, purge: serde_json::Value) -> String {
    serde_json::json!({"items": [{"channel": "counter", "purge": purge,
        "formats": {"http-stream": {"content": content}}}]})
    .to_string()
}

/// Opens `/counter`; returns the stream and its X-Cache.
async fn open(hf: &Holdfast, expect: &str) -> (holdfast_tests::OpenStream, String) {
    let mut stream = Client::new().open(&hf.url("/counter")).await;
    assert!(
        stream.read_until(expect, WAIT).await,
        "{}\n{}",
        stream.text(),
        hf.logs()
    );
    let verdict = stream
        .headers
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (stream, verdict)
}

fn origin_hits(origin: &Scripted) -> usize {
    origin
        .seen()
        .iter()
        .filter(|s| s.path == "/counter")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_then_publish_through_varnish() {
    let (origin, value) = counter_origin().await;
    let varnish = Varnish::start(&origin.target()).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", varnish.target()))
        .set(
            "handler",
            "purge_targets",
            format!("http://{}", varnish.target()),
        )
        .run()
        .await;
    let (mut first, verdict) = open(&hf, "data: 1\n\n").await;
    assert_eq!(verdict, "MISS");
    let (mut second, verdict) = open(&hf, "data: 1\n\n").await;
    assert_eq!(verdict, "HIT");

    // The value changes: purge the URL (as clients ask for it) and publish.
    value.store(2, Ordering::SeqCst);
    let url = hf.url("/counter");
    let body = item("data: 2\n\n", serde_json::json!({"urls": [url]}));
    assert_eq!(hf.publish(&body).await.0, 200);
    for stream in [&mut first, &mut second] {
        assert!(
            stream.read_until("data: 2\n\n", WAIT).await,
            "{}",
            hf.logs()
        );
    }
    // Delivered after the purge: a new client asks the origin again.
    let (_third, verdict) = open(&hf, "data: 2\n\n").await;
    assert_eq!(verdict, "MISS");
    assert_eq!(origin_hits(&origin), 2);

    // By surrogate key (xkey), after the pacing window.
    value.store(3, Ordering::SeqCst);
    let body = item("data: 3\n\n", serde_json::json!(["counters"]));
    assert_eq!(hf.publish(&body).await.0, 200);
    assert!(first.read_until("data: 3\n\n", WAIT).await, "{}", hf.logs());
    let (_fourth, verdict) = open(&hf, "data: 3\n\n").await;
    assert_eq!(verdict, "MISS");
    assert_eq!(origin_hits(&origin), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_then_publish_with_the_edge_cache() {
    let (origin, value) = counter_origin().await;
    let hf = Holdfast::builder()
        .route(format!("*,cache {}", origin.target()))
        .run()
        .await;
    let (mut first, verdict) = open(&hf, "data: 1\n\n").await;
    assert_eq!(verdict, "MISS");
    let (_, verdict) = open(&hf, "data: 1\n\n").await;
    assert_eq!(verdict, "HIT");
    value.store(2, Ordering::SeqCst);
    let body = item("data: 2\n\n", serde_json::json!(["counters"]));
    assert_eq!(hf.publish(&body).await.0, 200);
    assert!(first.read_until("data: 2\n\n", WAIT).await);
    let (_, verdict) = open(&hf, "data: 2\n\n").await;
    assert_eq!(verdict, "MISS", "{}", hf.logs());

    value.store(3, Ordering::SeqCst);
    let body = item(
        "data: 3\n\n",
        serde_json::json!({"urls": [hf.url("/counter")]}),
    );
    assert_eq!(hf.publish(&body).await.0, 200);
    assert!(first.read_until("data: 3\n\n", WAIT).await);
    let (_, verdict) = open(&hf, "data: 3\n\n").await;
    assert_eq!(verdict, "MISS");
    assert_eq!(origin_hits(&origin), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastly_api_purges_and_a_failing_target_does_not_block() {
    let (origin, _) = counter_origin().await;
    let fastly = Scripted::start(|_: &Seen| answer(200, &[], "{\"status\": \"ok\"}")).await;
    // A target nobody listens on fails: logged, retried, delivery goes on.
    let dead = holdfast_tests::free_port();
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set(
            "handler",
            "purge_targets",
            format!("fastly:SVC123, http://127.0.0.1:{dead}"),
        )
        .set(
            "handler",
            "fastly_api_url",
            format!("http://{}", fastly.target()),
        )
        .set("handler", "fastly_api_token", "secret-token")
        .run()
        .await;
    let (mut stream, _) = open(&hf, "data: 1\n\n").await;
    let body = item(
        "data: 2\n\n",
        serde_json::json!({"keys": ["k1", "k2"], "soft": true}),
    );
    let sent = Instant::now();
    assert_eq!(hf.publish(&body).await.0, 200);
    assert!(
        stream.read_until("data: 2\n\n", WAIT).await,
        "{}",
        hf.logs()
    );
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    let purges: Vec<Seen> = fastly.seen();
    let paths: Vec<&str> = purges.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/service/SVC123/purge/k1", "/service/SVC123/purge/k2"]
    );
    for purge in &purges {
        assert_eq!(purge.method, "POST");
        assert_eq!(purge.header("fastly-key").as_deref(), Some("secret-token"));
        assert_eq!(purge.header("fastly-soft-purge").as_deref(), Some("1"));
    }
    assert!(hf.wait_log("purge failed", WAIT).await, "{}", hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_within_the_window_collapse_into_the_latest() {
    let (origin, _) = counter_origin().await;
    let purges = Scripted::start(|_: &Seen| answer(200, &[], "purged\n")).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set(
            "handler",
            "purge_targets",
            format!("http://{}", purges.target()),
        )
        .run()
        .await;
    let (mut stream, _) = open(&hf, "data: 1\n\n").await;
    let started = Instant::now();
    for n in 2..=21 {
        let body = item(&format!("data: {n}\n\n"), serde_json::json!(["counters"]));
        assert_eq!(hf.publish(&body).await.0, 200);
    }
    // The first change at once, then the latest at the window's end.
    assert!(
        stream.read_until("data: 21\n\n", WAIT).await,
        "{}",
        hf.logs()
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert_eq!(stream.text(), "data: 1\n\ndata: 2\n\ndata: 21\n\n");
    assert_eq!(purges.seen().len(), 2, "one purge per window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_held_with_stale_cached_data_converges() {
    // The origin names each value's id (prev-id on the channel) and a next
    // link that answers with the current value.
    let value = Arc::new(AtomicUsize::new(1));
    let v = value.clone();
    let origin = Scripted::start(move |seen: &Seen| {
        let now = v.load(Ordering::SeqCst);
        let channel = format!("counter; prev-id={now}");
        let headers = [
            ("Content-Type", "text/event-stream"),
            ("Grip-Hold", "stream"),
            ("Grip-Channel", channel.as_str()),
            ("Grip-Link", "</counter/next>; rel=next"),
            ("Surrogate-Control", "max-age=600"),
        ];
        match seen.path.as_str() {
            "/counter" => answer(200, &headers, &format!("data: {now}\n\n")),
            "/counter/next" => answer(200, &headers[..4], &format!("data: {now} (caught up)\n\n")),
            _ => answer(404, &[], "no\n"),
        }
    })
    .await;
    // The purge never reaches the cache (a dead target): the cache keeps
    // serving value 1, as it would to a client that fetched it just before
    // a purge.
    let dead = holdfast_tests::free_port();
    let hf = Holdfast::builder()
        .route(format!("*,cache {}", origin.target()))
        .set(
            "handler",
            "purge_targets",
            format!("http://127.0.0.1:{dead}"),
        )
        // Only the publish brings the first client up to date.
        .set("handler", "update_on_first_subscription", "false")
        .run()
        .await;
    let (mut first, _) = open(&hf, "data: 1\n\n").await;
    value.store(2, Ordering::SeqCst);
    let body = serde_json::json!({"items": [{"channel": "counter", "id": "2", "prev-id": "1",
        "purge": ["counters"], "formats": {"http-stream": {"content": "data: 2\n\n"}}}]});
    assert_eq!(hf.publish(&body.to_string()).await.0, 200);
    assert!(first.read_until("data: 2\n\n", WAIT).await, "{}", hf.logs());
    // Held with the stale answer (prev-id 1) after item 2 went out: the
    // handler sees the gap and follows the next link.
    let (mut late, verdict) = open(&hf, "data: 1\n\n").await;
    assert_eq!(verdict, "HIT");
    assert!(
        late.read_until("data: 2 (caught up)\n\n", WAIT).await,
        "{}\n{}",
        late.text(),
        hf.logs()
    );
}
