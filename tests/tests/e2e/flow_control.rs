//! Nothing lost off the happy path: bursts of WebSocket messages both ways,
//! a client that stops reading, a slow origin, a large upload to a slow
//! reader, messages above 1 MiB, and permessage-deflate at every size. The
//! client is the real `websockets` library (`tests/python/ws_flow.py`), and
//! so is the WebSocket origin (`tests/python/ws_origin.py`).

use bytes::Bytes;
use holdfast_tests::harness::origin::{fnv1a, pattern, FNV_OFFSET};
use holdfast_tests::{run_json, Client, Holdfast, Origin, PyWsOrigin};
use std::time::Duration;
use tokio::sync::mpsc;

/// Long enough for 10,000 messages of up to 64 KiB each way through debug
/// builds on a busy 2-core machine.
const FLOW_TIMEOUT: Duration = Duration::from_secs(150);

async fn flow(url: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec![url];
    all.extend_from_slice(args);
    run_json("ws_flow.py", &all, FLOW_TIMEOUT).await
}

async fn passthrough(origin: &PyWsOrigin) -> Holdfast {
    Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await
}

fn ws(hf: &Holdfast, path: &str) -> String {
    format!("ws://{}{path}", hf.addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_from_the_client_all_come_back_in_order() {
    let mut origin = PyWsOrigin::start().await;
    let hf = passthrough(&origin).await;
    let out = flow(&ws(&hf, "/echo"), &["send", "10000"]).await;
    assert_eq!(
        (&out["sent"], &out["received"], &out["mismatch"]),
        (&10000.into(), &10000.into(), &serde_json::Value::Null),
        "{out}\n{}",
        hf.logs()
    );
    assert!(out.get("closed").is_none(), "{out}");
    assert_eq!(
        origin.next_close(Duration::from_secs(10)).await,
        Some(Some(1000)),
        "the client's close reaches the origin\n{}",
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_from_the_origin_all_reach_the_client_in_order() {
    let origin = PyWsOrigin::start().await;
    let hf = passthrough(&origin).await;
    let out = flow(&ws(&hf, "/burst?n=10000"), &["receive", "10000"]).await;
    assert_eq!(out["received"], 10000, "{out}\n{}", hf.logs());
    assert!(out.get("closed").is_none(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_messages_back_to_back_both_ways() {
    let origin = PyWsOrigin::start().await;
    let hf = passthrough(&origin).await;
    let out = flow(
        &ws(&hf, "/burst?n=2000&size=10"),
        &["receive", "2000", "10"],
    )
    .await;
    assert_eq!(out["received"], 2000, "{out}\n{}", hf.logs());
    assert!(out.get("closed").is_none(), "{out}");
    let out = flow(&ws(&hf, "/echo"), &["send", "5000", "100"]).await;
    assert_eq!(out["received"], 5000, "{out}\n{}", hf.logs());
    assert!(out.get("closed").is_none(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_for_ten_seconds_gets_everything_afterwards() {
    let origin = PyWsOrigin::start().await;
    let hf = passthrough(&origin).await;
    let out = flow(&ws(&hf, "/burst?n=5000"), &["pause", "5000", "10"]).await;
    assert_eq!(out["received"], 5000, "{out}\n{}", hf.logs());
    assert!(out.get("closed").is_none(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reading_origin_slows_the_client_and_loses_nothing() {
    let origin = PyWsOrigin::start().await;
    let hf = passthrough(&origin).await;
    // The origin sleeps 1 ms before each read: the client's burst waits
    // for it, within the proxy's credits.
    let out = flow(&ws(&hf, "/slow?delay=0.001"), &["send", "2000"]).await;
    assert_eq!(out["received"], 2000, "{out}\n{}", hf.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_above_one_mib_pass_when_the_limit_is_raised() {
    let origin = PyWsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("runner", "client_max_message_size", (8 << 20).to_string())
        .run()
        .await;
    let out = flow(&ws(&hf, "/echo"), &["big", "2097152", "6291456"]).await;
    assert_eq!(out["bad"], serde_json::json!([]), "{out}\n{}", hf.logs());
    assert_eq!(out["checked"], 2, "{out}\n{}", hf.logs());
    // Over the limit, from either side: 1009.
    let out = flow(&ws(&hf, "/echo"), &["big", "9437184"]).await;
    assert_eq!(out["closed"][0], 1009, "{out}\n{}", hf.logs());
    let out = flow(
        &ws(&hf, "/burst?n=1&size=9437184"),
        &["receive", "1", "9437184"],
    )
    .await;
    assert_eq!(
        out["closed"][0],
        1009,
        "from the origin\n{out}\n{}",
        hf.logs()
    );
}

/// Every size from 0 to 256 KiB (around 58,000–62,000 and 128–132 KiB
/// closely), text and binary, with each kind of deflate offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_is_exact_at_every_size() {
    let origin = PyWsOrigin::start().await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("runner", "allow_compression", "true")
        .run()
        .await;
    for offer in ["default", "no-takeover", "none"] {
        let out = flow(&ws(&hf, "/echo"), &["sizes", offer]).await;
        let expected: &[&str] = if offer == "none" {
            &[]
        } else {
            &["permessage-deflate"]
        };
        assert_eq!(
            out["extensions"],
            serde_json::json!(expected),
            "{offer}: {out}"
        );
        assert_eq!(
            out["bad"],
            serde_json::json!([]),
            "{offer}: {out}\n{}",
            hf.logs()
        );
        assert!(out.get("closed").is_none(), "{offer}: {out}");
        assert!(out["checked"].as_u64() > Some(100), "{offer}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_answers_after_two_minutes_gets_its_answer_through() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    // Past two 45 s keep-alive rounds on both ZHTTP links.
    let reply = Client::new()
        .with_timeout(Duration::from_secs(150))
        .get(&hf.url("/delay/120"))
        .await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), hf.logs());
    assert_eq!(reply.text(), "late\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabyte_upload_to_a_slow_reader_completes() {
    const SIZE: usize = 100 << 20;
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("runner", "client_max_body_size", (200u64 << 20).to_string())
        .run()
        .await;
    let (tx, rx) = mpsc::channel(4);
    let feeder = tokio::spawn(async move {
        let (mut sent, mut hash) = (0, FNV_OFFSET);
        while sent < SIZE {
            let chunk: Vec<u8> = (sent..(sent + 65536).min(SIZE))
                .map(|i| (i * 31 % 253) as u8)
                .collect();
            hash = fnv1a(&chunk, hash);
            sent += chunk.len();
            if tx.send(Bytes::from(chunk)).await.is_err() {
                break;
            }
        }
        hash
    });
    let reply = Client::new()
        .with_timeout(FLOW_TIMEOUT)
        .send_streamed("POST", &hf.url("/slow-read"), rx)
        .await;
    let hash = feeder.await.unwrap();
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), hf.logs());
    let echo = reply.json();
    assert_eq!(echo["body_len"], SIZE);
    assert_eq!(echo["body_hash"], format!("{hash:016x}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_large_download_holds_no_more_than_its_window() {
    const SIZE: usize = 50 << 20;
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let before = hf.rss_kib(None);
    let mut stream = Client::new()
        .open(&hf.url(&format!("/download/{SIZE}")))
        .await;
    assert_eq!(stream.status, 200);
    // Read a little, then nothing: the windows fill and everyone waits.
    assert!(stream.read_until("\u{0}", Duration::from_secs(10)).await);
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        // A slow reader (a sleep is the point here, not a synchronisation).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let grown = hf.rss_kib(None).saturating_sub(before);
        assert!(
            grown < 16 * 1024,
            "Holdfast grew {grown} KiB while the client read nothing"
        );
    }
    assert!(stream.read_to_end(FLOW_TIMEOUT).await, "{}", hf.logs());
    assert!(!stream.broken, "{}", hf.logs());
    assert_eq!(stream.received.len(), SIZE);
    assert!(
        stream
            .received
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern(i)),
        "downloaded bytes differ"
    );
}
