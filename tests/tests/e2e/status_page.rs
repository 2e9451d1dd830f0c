//! The live status page (`/_holdfast/` on the publish port) in headless
//! Chromium: the numbers it shows follow connections and publishes (the
//! page reports them as they arrive over Holdfast's SSE), and two
//! screenshots taken around a change differ.

use holdfast_tests::{answer, screenshot, Browser, Client, Holdfast, Origin, Scripted, Seen};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn number(report: &str, key: &str) -> Option<i64> {
    report
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

async fn publish(hf: &Holdfast, n: usize) {
    for k in 0..n {
        let item = serde_json::json!({"items": [{"channel": "test",
            "formats": {"http-stream": {"content": format!("item {k}\n")}}}]});
        assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_follows_connections_and_publishes() {
    let origin = Origin::start().await;
    let recorder = Scripted::start(|_: &Seen| answer(204, &[], "")).await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let page = hf.publish_url(&format!(
        "/_holdfast/#report=http://{}/report",
        recorder.target()
    ));
    let _browser = Browser::open(&page);
    let reported = |check: fn(&str) -> bool| {
        let recorder = &recorder;
        async move { recorder.wait_for(WAIT, |s| check(&s.path)).await.is_some() }
    };
    assert!(
        reported(|r| number(r, "held") == Some(0)).await,
        "the page never reported: {:?}",
        recorder.seen()
    );
    let before = screenshot(&hf.publish_url("/_holdfast/#once")).await;
    assert!(before.starts_with(b"\x89PNG\r\n\x1a\n"));

    let client = Client::new();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = client.open(&hf.url("/grip")).await;
        assert!(stream.read_until("initial\n", WAIT).await);
        streams.push(stream);
    }
    publish(&hf, 5).await;
    assert!(
        reported(|r| number(r, "held") == Some(3)
            && number(r, "channels") == Some(1)
            && number(r, "connections").is_some_and(|c| c >= 3))
        .await,
        "{:?}",
        recorder.seen().iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    assert!(
        reported(|r| number(r, "delivery_rate").is_some_and(|d| d > 0)).await,
        "no delivery rate: {:?}",
        recorder.seen().iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    let after = screenshot(&hf.publish_url("/_holdfast/#once")).await;
    assert!(after.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_ne!(before, after, "the numbers on the page did not move");
}
