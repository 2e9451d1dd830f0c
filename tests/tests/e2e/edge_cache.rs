//! The built-in edge cache (route option `cache`): GRIP answers from
//! cache, one origin fetch for many concurrent misses, stale answers while
//! the origin fails, purges by URL and by Surrogate-Key, Vary, the size
//! bound, and requests it must not answer.

use holdfast_tests::harness::scripted::DELAY;
use holdfast_tests::{answer, Client, Holdfast, Scripted, Seen};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// `/counter`: SSE stream hold on `counter`, 10 minutes; `/slow`: a
/// cacheable answer after 500 ms; `/short`: fresh 1 s, stale-if-error 60 s;
/// `/tagged`: tagged `counters`; `/vary`: varies on Accept; `/big/<n>`: n
/// bytes, cacheable; `/tiny/<n>`: 2 bytes, cacheable.
fn origin_script(seen: &Seen, failing: bool) -> holdfast_tests::harness::scripted::Answer {
    if failing {
        return answer(503, &[], "down\n");
    }
    let path = seen.path.as_str();
    match path {
        "/counter" => answer(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "counter"),
                ("Surrogate-Control", "max-age=600"),
                ("Surrogate-Key", "counters"),
            ],
            "event: message\ndata: 1\n\n",
        ),
        "/slow" => answer(
            200,
            &[("Cache-Control", "max-age=600"), (DELAY, "500")],
            "slow\n",
        ),
        "/short" => answer(
            200,
            &[("Cache-Control", "max-age=1, stale-if-error=60")],
            &format!("short {}\n", seen.header("x-n").unwrap_or_default()),
        ),
        "/tagged" => answer(
            200,
            &[
                ("Cache-Control", "max-age=600"),
                ("Surrogate-Key", "counters other"),
            ],
            "tagged\n",
        ),
        "/vary" => {
            let sse = seen
                .header("accept")
                .is_some_and(|a| a.contains("text/event-stream"));
            answer(
                200,
                &[("Cache-Control", "max-age=600"), ("Vary", "Accept")],
                if sse { "as sse\n" } else { "as text\n" },
            )
        }
        _ if path.starts_with("/tiny/") => answer(200, &[("Cache-Control", "max-age=600")], "t\n"),
        _ if path.starts_with("/big/") => {
            let n: usize = path[5..].parse().unwrap_or(0);
            answer(200, &[("Cache-Control", "max-age=600")], &"b".repeat(n))
        }
        _ => answer(404, &[], "no\n"),
    }
}

struct Setup {
    origin: Scripted,
    failing: Arc<AtomicBool>,
    hf: Holdfast,
}

async fn setup(cache_size: Option<&str>) -> Setup {
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let origin =
        Scripted::start(move |seen| origin_script(seen, flag.load(Ordering::SeqCst))).await;
    let mut builder = Holdfast::builder().route(format!("*,cache {}", origin.target()));
    if let Some(size) = cache_size {
        builder = builder.set("proxy", "cache_size", size);
    }
    let hf = builder.run().await;
    Setup {
        origin,
        failing,
        hf,
    }
}

fn hits(origin: &Scripted, path: &str) -> usize {
    origin.seen().iter().filter(|s| s.path == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grip_answers_from_the_edge_cache() {
    let Setup { origin, hf, .. } = setup(None).await;
    let client = Client::new();
    let mut streams = Vec::new();
    for expected in ["MISS", "HIT", "HIT"] {
        let mut stream = client.open(&hf.url("/counter")).await;
        assert_eq!(stream.status, 200, "{}", hf.logs());
        assert!(
            stream.read_until("data: 1\n\n", WAIT).await,
            "{}",
            stream.text()
        );
        assert_eq!(stream.headers["x-cache"], expected);
        for name in stream.headers.keys() {
            let name = name.as_str();
            assert!(
                !name.starts_with("grip-") && !name.starts_with("surrogate-") && name != "age",
                "{name} reached the client"
            );
        }
        streams.push(stream);
    }
    assert_eq!(hits(&origin, "/counter"), 1);
    let item = serde_json::json!({"items": [{"channel": "counter",
        "formats": {"http-stream": {"content": "data: 2\n\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    for stream in &mut streams {
        assert!(
            stream.read_until("data: 2\n\n", WAIT).await,
            "{}",
            stream.text()
        );
    }
    // Purge by Surrogate-Key, from this machine: the next client asks the
    // origin again.
    let purge = client
        .send(
            "PURGE",
            &hf.url("/"),
            &[("surrogate-key", "counters")],
            Vec::new(),
        )
        .await;
    assert_eq!(
        (purge.status, purge.text().as_str()),
        (200, "Purged 1 objects.\n")
    );
    let mut again = client.open(&hf.url("/counter")).await;
    assert!(again.read_until("data: 1\n\n", WAIT).await);
    assert_eq!(again.headers["x-cache"], "MISS");
    assert_eq!(hits(&origin, "/counter"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_fetch() {
    let Setup { origin, hf, .. } = setup(None).await;
    let mut replies = Vec::new();
    for _ in 0..10 {
        let url = hf.url("/slow");
        replies.push(tokio::spawn(async move { Client::new().get(&url).await }));
    }
    for reply in replies {
        let reply = tokio::time::timeout(WAIT, reply).await.unwrap().unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (200, "slow\n"));
    }
    assert_eq!(hits(&origin, "/slow"), 1, "{}", hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_while_the_origin_fails() {
    let Setup {
        origin,
        failing,
        hf,
    } = setup(None).await;
    let client = Client::new();
    let first = client
        .send("GET", &hf.url("/short"), &[("x-n", "1")], Vec::new())
        .await;
    assert_eq!(first.text(), "short 1\n");
    // Fresh for a second: wait that out (time passing is the event).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    failing.store(true, Ordering::SeqCst);
    let stale = client
        .send("GET", &hf.url("/short"), &[("x-n", "2")], Vec::new())
        .await;
    assert_eq!((stale.status, stale.text().as_str()), (200, "short 1\n"));
    assert_eq!(stale.header("x-cache"), Some("STALE"));
    assert!(stale
        .header("age")
        .is_some_and(|a| a.parse::<u64>().unwrap() >= 1));
    // Origin back: the stale answer is replaced.
    failing.store(false, Ordering::SeqCst);
    let fresh = client
        .send("GET", &hf.url("/short"), &[("x-n", "3")], Vec::new())
        .await;
    assert_eq!(fresh.text(), "short 3\n");
    assert_eq!(fresh.header("x-cache"), Some("MISS"));
    assert_eq!(hits(&origin, "/short"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_url_vary_and_personal_requests() {
    let Setup { origin, hf, .. } = setup(None).await;
    let client = Client::new();
    let get = |accept: &'static str| {
        let (client, url) = (client.clone(), hf.url("/vary"));
        async move {
            let reply = client
                .send("GET", &url, &[("accept", accept)], Vec::new())
                .await;
            (
                reply.text(),
                reply.header("x-cache").unwrap_or("").to_owned(),
            )
        }
    };
    assert_eq!(
        get("text/event-stream").await,
        ("as sse\n".into(), "MISS".into())
    );
    assert_eq!(get("text/plain").await, ("as text\n".into(), "MISS".into()));
    assert_eq!(
        get("text/event-stream").await,
        ("as sse\n".into(), "HIT".into())
    );
    assert_eq!(get("text/plain").await, ("as text\n".into(), "HIT".into()));
    // A URL purge removes every variant.
    let purge = client
        .send("PURGE", &hf.url("/vary"), &[], Vec::new())
        .await;
    assert_eq!(purge.text(), "Purged 2 objects.\n");
    assert_eq!(get("text/plain").await.1, "MISS");
    // Requests with cookies or credentials neither use nor fill the cache.
    let tagged = |headers: &'static [(&'static str, &'static str)]| {
        let (client, url) = (client.clone(), hf.url("/tagged"));
        async move { client.send("GET", &url, headers, Vec::new()).await }
    };
    assert_eq!(tagged(&[]).await.header("x-cache"), Some("MISS"));
    let personal = tagged(&[("cookie", "session=1")]).await;
    assert_eq!(personal.text(), "tagged\n");
    assert_eq!(personal.header("x-cache"), None);
    assert_eq!(
        tagged(&[("authorization", "Bearer x")])
            .await
            .header("x-cache"),
        None
    );
    assert_eq!(tagged(&[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(hits(&origin, "/tagged"), 3);
    // A purge by key takes every object with one of its keys.
    let purge = client
        .send(
            "PURGE",
            &hf.url("/"),
            &[("surrogate-key", "other nothing")],
            Vec::new(),
        )
        .await;
    assert_eq!(purge.text(), "Purged 1 objects.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_answers_make_room() {
    // Room for two 1,500-byte answers (each counts its bookkeeping too,
    // about 2,600 bytes), not three.
    let Setup { origin, hf, .. } = setup(Some("6000")).await;
    let client = Client::new();
    let get = |path: &'static str| {
        let (client, url) = (client.clone(), hf.url(path));
        async move {
            client
                .get(&url)
                .await
                .header("x-cache")
                .unwrap_or("")
                .to_owned()
        }
    };
    assert_eq!(get("/big/1500").await, "MISS");
    assert_eq!(get("/big/1501").await, "MISS");
    assert_eq!(get("/big/1500").await, "HIT");
    // A third pushes out the least recently used (1501).
    assert_eq!(get("/big/1502").await, "MISS");
    assert_eq!(get("/big/1500").await, "HIT");
    assert_eq!(get("/big/1501").await, "MISS");
    assert_eq!(hits(&origin, "/big/1501"), 2);
    // Larger than the whole cache: passed on, never stored.
    assert_eq!(get("/big/7000").await, "MISS");
    assert_eq!(get("/big/7000").await, "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_within_its_size_in_memory() {
    const SIZE: u64 = 2 << 20;
    let Setup {
        origin: _origin,
        hf,
        ..
    } = setup(Some(&SIZE.to_string())).await;
    let warm = Client::new();
    for n in 0..200 {
        warm.get(&hf.url(&format!("/tiny/{}", n % 2))).await;
    }
    let before = hf.rss_kib(Some("holdfast-proxy"));
    // Many distinct tiny answers: each costs far more in bookkeeping than
    // its body; the bound must hold for what they really take.
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let base = hf.url("/tiny/");
            tokio::spawn(async move {
                let client = Client::new();
                for i in 0..1000 {
                    let reply = client.get(&format!("{base}{}", 2 + w * 1000 + i)).await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let grown = hf.rss_kib(Some("holdfast-proxy")).saturating_sub(before);
    let metrics = Client::new().get(&hf.publish_url("/metrics")).await.text();
    let counted = holdfast_tests::harness::holdfast::metric(&metrics, "holdfast_cache_bytes", &[]);
    assert!(counted.is_some_and(|b| b <= SIZE as f64), "{counted:?}");
    assert!(
        grown <= (SIZE >> 10) + 3 * 1024,
        "the proxy grew by {grown} KiB for a {} KiB cache",
        SIZE >> 10
    );
}
