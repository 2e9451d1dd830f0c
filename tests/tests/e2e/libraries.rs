//! Real client libraries against Holdfast: Python's gripcontrol/pubcontrol
//! publishing over HTTP, ZeroMQ PUSH, and ZeroMQ via the command socket.

use holdfast_tests::harness::python::python;
use holdfast_tests::{Client, Holdfast, Origin};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

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

async fn holdfast_publish(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(holdfast_tests::harness::binaries::binary(
        "holdfast-publish",
    ))
    .args(args)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("holdfast-publish starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("finished")
        .expect("ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdfast_publish_cli() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = Client::new().open(&hf.url("/grip")).await;
    assert!(stream.read_until("initial\n", WAIT).await);

    let http = hf.publish_url("");
    let out = holdfast_publish(&["test", "from the cli", "--spec", &http], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Published\n");
    assert!(
        stream.read_until("from the cli\n", WAIT).await,
        "{}",
        stream.text()
    );

    let zmq = format!("tcp://127.0.0.1:{}", hf.publish_pull_port);
    let out = holdfast_publish(&["test", "--spec", &zmq, "--no-eol"], Some("from stdin|")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stream.read_until("from stdin|", WAIT).await,
        "{}",
        stream.text()
    );

    let out = holdfast_publish(&["test", "--close", "--spec", &http], None).await;
    assert!(out.status.success());
    assert!(stream.read_to_end(WAIT).await);

    // Errors are reported, with a non-zero status.
    let closed = format!("http://127.0.0.1:{}", holdfast_tests::free_port());
    let out = holdfast_publish(&["test", "x", "--spec", &closed], None).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("publish failed"), "{err}");
    let out = holdfast_publish(&["test", "x", "-H", "no-colon", "--spec", &http], None).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected Name: value"));
}
