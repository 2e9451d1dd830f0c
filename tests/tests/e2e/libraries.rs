//! Real client libraries against Holdfast: Python's gripcontrol/pubcontrol
//! publishing over HTTP, ZeroMQ PUSH, and ZeroMQ via the command socket.

use holdfast_tests::{Client, Holdfast, Origin};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test.sh (it installs the Python client libraries)",
        venv.display()
    );
    venv
}

async fn publish_with_gripcontrol(mode: &str, uri: &str, content: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/publish.py");
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(python())
            .arg(script)
            .args([mode, uri, "test", content])
            .output(),
    )
    .await
    .expect("publisher finished within 30 s")
    .expect("python ran");
    assert!(
        output.status.success(),
        "{mode}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gripcontrol_publishes_over_http_and_zmq() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);

    publish_with_gripcontrol("http", &hf.publish_url(""), "via http\n").await;
    assert!(
        stream.read_until("via http\n", WAIT).await,
        "{}",
        stream.text()
    );

    let push = format!("tcp://127.0.0.1:{}", hf.publish_pull_port);
    publish_with_gripcontrol("zmq-push", &push, "via push\n").await;
    assert!(
        stream.read_until("via push\n", WAIT).await,
        "{}",
        stream.text()
    );

    let command = format!("tcp://127.0.0.1:{}", hf.command_port);
    publish_with_gripcontrol("zmq", &command, "via command\n").await;
    assert!(
        stream.read_until("via command\n", WAIT).await,
        "{}\n{}",
        stream.text(),
        hf.logs()
    );
}
