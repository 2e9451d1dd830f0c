//! The edge cache as an HTTP cache (RFC 9111, shared): collapsing that
//! survives the leader's outcome, `Age`, `Expires`, `must-revalidate`,
//! `HEAD` and conditional requests answered from the cache,
//! `stale-while-revalidate`, and soft purges.

use holdfast_tests::harness::scripted::DELAY;
use holdfast_tests::{answer, Client, Holdfast, Scripted, Seen};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const WAIT: Duration = Duration::from_secs(20);

/// The origin: `/cold` (1 s, cacheable, ETag "v1"), `/flaky` (1 s, 503),
/// `/aged/<n>` (max-age 30 with Age n), `/expires` (Expires in 60 s, no
/// Cache-Control), `/strict` (max-age 1, must-revalidate, stale-if-error
/// 60), `/page` (cacheable, ETag and Last-Modified), `/swr` (max-age 1,
/// stale-while-revalidate 60; refreshes take 3 s), `/etagged` (max-age 1,
/// ETag "e1"; asked with that ETag, 304 and max-age 60), `/soft` (tagged `k`,
/// stale-if-error 600). Bodies count the origin's answers per path;
/// everything answers 503 while `failing`.
fn origin(seen: &Seen, failing: bool, count: usize) -> holdfast_tests::harness::scripted::Answer {
    if failing {
        return answer(503, &[], "down\n");
    }
    let body = format!("{} #{count}\n", seen.path);
    let now = SystemTime::now();
    let date = httpdate::fmt_http_date(now);
    match seen.path.as_str() {
        "/cold" => answer(
            200,
            &[
                ("Cache-Control", "max-age=60"),
                ("ETag", "\"v1\""),
                (DELAY, "1000"),
            ],
            &body,
        ),
        "/flaky" => answer(503, &[(DELAY, "1000")], &body),
        "/etagged" if seen.header("if-none-match").as_deref() == Some("\"e1\"") => answer(
            304,
            &[("Cache-Control", "max-age=60"), ("ETag", "\"e1\"")],
            "",
        ),
        "/etagged" => answer(
            200,
            &[("Cache-Control", "max-age=1"), ("ETag", "\"e1\"")],
            &body,
        ),
        "/aged/10" => answer(
            200,
            &[("Cache-Control", "max-age=30"), ("Age", "10")],
            &body,
        ),
        "/aged/100" => answer(
            200,
            &[("Cache-Control", "max-age=30"), ("Age", "100")],
            &body,
        ),
        "/expires" => {
            let expires = httpdate::fmt_http_date(now + Duration::from_secs(60));
            answer(200, &[("Date", &date), ("Expires", &expires)], &body)
        }
        "/strict" => answer(
            200,
            &[(
                "Cache-Control",
                "max-age=1, must-revalidate, stale-if-error=60",
            )],
            &body,
        ),
        "/page" => answer(
            200,
            &[
                ("Cache-Control", "max-age=60"),
                ("ETag", "W/\"p1\""),
                ("Last-Modified", "Fri, 27 Nov 2026 12:00:00 GMT"),
                ("Content-Type", "text/plain"),
            ],
            &body,
        ),
        "/swr" if count > 1 => answer(
            200,
            &[
                ("Cache-Control", "max-age=1, stale-while-revalidate=60"),
                (DELAY, "3000"),
            ],
            &body,
        ),
        "/swr" => answer(
            200,
            &[("Cache-Control", "max-age=1, stale-while-revalidate=60")],
            &body,
        ),
        "/soft" => answer(
            200,
            &[
                ("Cache-Control", "max-age=600, stale-if-error=600"),
                ("Surrogate-Key", "k"),
            ],
            &body,
        ),
        _ => answer(404, &[], "no\n"),
    }
}

struct Setup {
    origin: Scripted,
    failing: Arc<AtomicBool>,
    hf: Holdfast,
}

async fn setup() -> Setup {
    let failing = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        usize,
    >::new()));
    let flag = failing.clone();
    let origin = Scripted::start(move |seen| {
        let count = {
            let mut counts = counts.lock().unwrap();
            let n = counts.entry(seen.path.clone()).or_default();
            *n += 1;
            *n
        };
        origin(seen, flag.load(Ordering::SeqCst), count)
    })
    .await;
    let hf = Holdfast::builder()
        .route(format!("*,cache {}", origin.target()))
        .run()
        .await;
    Setup {
        origin,
        failing,
        hf,
    }
}

fn asked(origin: &Scripted, path: &str) -> usize {
    origin.seen().iter().filter(|s| s.path == path).count()
}

/// `n` GETs of `path` at once, after a first one carrying `first_headers`
/// has reached the origin; their statuses and bodies.
async fn stampede(
    setup: &Setup,
    path: &str,
    first_headers: &'static [(&'static str, &'static str)],
    n: usize,
) -> Vec<(u16, String)> {
    let url = setup.hf.url(path);
    let first = tokio::spawn({
        let url = url.clone();
        async move {
            Client::new()
                .send("GET", &url, first_headers, Vec::new())
                .await
        }
    });
    assert!(setup
        .origin
        .wait_for(WAIT, |s| s.path == path)
        .await
        .is_some());
    let rest: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Client::new().get(&url).await })
        })
        .collect();
    let mut out = vec![];
    let first = first.await.unwrap();
    out.push((first.status, first.text()));
    for reply in rest {
        let reply = reply.await.unwrap();
        out.push((reply.status, reply.text()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_leader_still_collapses_the_followers() {
    let setup = setup().await;
    let replies = stampede(&setup, "/cold", &[("If-None-Match", "\"v0\"")], 199).await;
    assert!(
        replies.iter().all(|r| *r == (200, "/cold #1\n".to_owned())),
        "{replies:?}"
    );
    assert_eq!(asked(&setup.origin, "/cold"), 1, "one origin request");
    let seen = &setup.origin.seen()[0];
    assert_eq!(
        seen.header("if-none-match"),
        None,
        "the origin is asked for the whole answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstorable_leader_answer_goes_to_the_followers() {
    let setup = setup().await;
    let replies = stampede(&setup, "/flaky", &[], 49).await;
    assert!(
        replies
            .iter()
            .all(|r| *r == (503, "/flaky #1\n".to_owned())),
        "{replies:?}"
    );
    assert_eq!(asked(&setup.origin, "/flaky"), 1, "{}", setup.hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_and_expires_decide_freshness() {
    let setup = setup().await;
    let client = Client::new();
    for _ in 0..2 {
        client.get(&setup.hf.url("/aged/100")).await;
        client.get(&setup.hf.url("/aged/10")).await;
        client.get(&setup.hf.url("/expires")).await;
    }
    assert_eq!(
        asked(&setup.origin, "/aged/100"),
        2,
        "Age past max-age: stale on arrival"
    );
    assert_eq!(asked(&setup.origin, "/aged/10"), 1);
    assert_eq!(
        asked(&setup.origin, "/expires"),
        1,
        "Expires makes it fresh"
    );
    let hit = client.get(&setup.hf.url("/aged/10")).await;
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert!(hit
        .header("age")
        .is_some_and(|a| a.parse::<u64>().unwrap() >= 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_revalidate_answers_are_never_served_stale() {
    let setup = setup().await;
    let client = Client::new();
    assert_eq!(client.get(&setup.hf.url("/strict")).await.status, 200);
    // Fresh for a second: wait that out (time passing is the event).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    setup.failing.store(true, Ordering::SeqCst);
    let reply = client.get(&setup.hf.url("/strict")).await;
    assert_eq!((reply.status, reply.text().as_str()), (503, "down\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_conditional_requests_are_answered_from_the_cache() {
    let setup = setup().await;
    let client = Client::new();
    let full = client.get(&setup.hf.url("/page")).await;
    assert_eq!(full.text(), "/page #1\n");
    let head = client
        .send("HEAD", &setup.hf.url("/page"), &[], Vec::new())
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-cache"), Some("HIT"));
    assert_eq!(head.header("content-length"), Some("9"));
    assert_eq!(head.text(), "");
    for condition in [
        ("If-None-Match", "\"p1\""),
        ("If-None-Match", "\"other\", W/\"p1\""),
        ("If-Modified-Since", "Fri, 27 Nov 2026 12:00:00 GMT"),
    ] {
        let reply = client
            .send("GET", &setup.hf.url("/page"), &[condition], Vec::new())
            .await;
        assert_eq!(reply.status, 304, "{condition:?}");
        assert_eq!(reply.header("etag"), Some("W/\"p1\""));
        assert_eq!(reply.header("x-cache"), Some("HIT"));
        assert_eq!(reply.text(), "");
    }
    let changed = client
        .send(
            "GET",
            &setup.hf.url("/page"),
            &[("If-None-Match", "\"p0\"")],
            Vec::new(),
        )
        .await;
    assert_eq!(
        (changed.status, changed.text().as_str()),
        (200, "/page #1\n")
    );
    assert_eq!(asked(&setup.origin, "/page"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_at_once_and_refreshes_once() {
    let setup = setup().await;
    let client = Client::new();
    assert_eq!(client.get(&setup.hf.url("/swr")).await.text(), "/swr #1\n");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Stale: served as it is (the refresh takes 3 s; a request that waited
    // for it would get #2), and refreshed once for all of them.
    for _ in 0..5 {
        let reply = client.get(&setup.hf.url("/swr")).await;
        assert_eq!(reply.text(), "/swr #1\n");
        assert_eq!(reply.header("x-cache"), Some("STALE"));
    }
    let refreshed = setup
        .origin
        .wait_for(WAIT, |_| asked(&setup.origin, "/swr") == 2)
        .await;
    assert!(refreshed.is_some());
    // Once the refresh is stored, it is served.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = client.get(&setup.hf.url("/swr")).await;
        if reply.text() == "/swr #2\n" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(asked(&setup.origin, "/swr"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_keeps_the_answer_for_errors_a_hard_one_does_not() {
    let setup = setup().await;
    let client = Client::new();
    let purge = |soft: bool| {
        let (client, url) = (client.clone(), setup.hf.url("/"));
        async move {
            let mut headers = vec![("surrogate-key", "k")];
            if soft {
                headers.push(("fastly-soft-purge", "1"));
            }
            client
                .send("PURGE", &url, &headers, Vec::new())
                .await
                .text()
        }
    };
    assert_eq!(
        client.get(&setup.hf.url("/soft")).await.text(),
        "/soft #1\n"
    );
    assert_eq!(purge(true).await, "Purged 1 objects.\n");
    // Stale now: the origin is asked, and while it fails the answer stays.
    setup.failing.store(true, Ordering::SeqCst);
    let reply = client.get(&setup.hf.url("/soft")).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "/soft #1\n"));
    assert_eq!(reply.header("x-cache"), Some("STALE"));
    assert_eq!(asked(&setup.origin, "/soft"), 2);
    assert_eq!(purge(false).await, "Purged 1 objects.\n");
    assert_eq!(client.get(&setup.hf.url("/soft")).await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_answer_is_revalidated_with_its_validators() {
    let setup = setup().await;
    let client = Client::new();
    assert_eq!(
        client.get(&setup.hf.url("/etagged")).await.text(),
        "/etagged #1\n"
    );
    // Fresh for a second: wait that out (time passing is the event).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let renewed = client.get(&setup.hf.url("/etagged")).await;
    assert_eq!(
        (renewed.status, renewed.text().as_str()),
        (200, "/etagged #1\n")
    );
    let asked_again = setup.origin.seen()[1].clone();
    assert_eq!(
        asked_again.header("if-none-match").as_deref(),
        Some("\"e1\"")
    );
    // The 304 made it fresh for a minute.
    let hit = client.get(&setup.hf.url("/etagged")).await;
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.text(), "/etagged #1\n");
    assert_eq!(asked(&setup.origin, "/etagged"), 2);
}
