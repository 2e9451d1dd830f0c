//! Fault tolerance: what held clients see when a process dies.

use holdfast_tests::{Client, Holdfast, Origin};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

fn stream_item(content: &str) -> String {
    serde_json::json!({"items": [{"channel": "test",
        "formats": {"http-stream": {"content": content}}}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxy_loses_no_held_connection() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut stream = client.open(&hf.url("/grip")).await;
        assert!(stream.read_until("initial\n", WAIT).await);
        streams.push(stream);
    }
    let proxy = hf.child_pid("holdfast-proxy").expect("proxy running");
    kill(Pid::from_raw(proxy), Signal::SIGKILL).unwrap();
    assert!(
        hf.wait_log("proxy restarted and ready", WAIT).await,
        "{}",
        hf.logs()
    );
    // Held sessions live in connmgr and the handler: still there.
    assert_eq!(hf.publish(&stream_item("after the crash\n")).await.0, 200);
    for stream in &mut streams {
        assert!(
            stream.read_until("after the crash\n", WAIT).await,
            "{}\n{}",
            stream.text(),
            hf.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_handler_ends_held_streams_and_comes_back() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);
    let handler = hf.child_pid("holdfast-handler").expect("handler running");
    let killed = Instant::now();
    kill(Pid::from_raw(handler), Signal::SIGKILL).unwrap();
    // The client sees its stream end (it can reconnect), never a hang.
    assert!(
        stream.read_to_end(Duration::from_secs(90)).await,
        "stream still open after {:?}\n{}",
        killed.elapsed(),
        hf.logs()
    );
    eprintln!("stream ended {:?} after the handler died", killed.elapsed());
    assert!(
        hf.wait_log("handler restarted and ready", WAIT).await,
        "{}",
        hf.logs()
    );
    // Reconnecting works and publishes flow again.
    let mut again = Client::new().open(&hf.url("/grip")).await;
    assert!(again.read_until("initial\n", WAIT).await);
    let published = tokio::time::timeout(WAIT, async {
        loop {
            let (status, _) = hf.publish(&stream_item("back\n")).await;
            if status == 200 && again.read_until("back\n", Duration::from_millis(500)).await {
                return;
            }
        }
    })
    .await;
    assert!(published.is_ok(), "{}\n{}", again.text(), hf.logs());
}
