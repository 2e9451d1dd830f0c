//! The live counter example (`examples/livecounter/`), as its README runs
//! it: the Django origin, Varnish with the repository's VCL, Holdfast in
//! front, and pages in headless Chromium that report each value they show
//! to a recorder. Two pages see an increment within a second; page loads
//! come from the cache (one origin request for many); with the origin
//! stopped, new pages still load the last value and get what is published
//! meanwhile.

use holdfast_tests::{answer, Browser, Client, Holdfast, Scripted, Seen, Varnish};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(30);

/// The example's origin, run with the test suite's Python; its request log
/// lines are kept.
struct Origin {
    child: tokio::process::Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    async fn start(port: u16, publish: &str) -> Origin {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join(".venv/bin/python");
        assert!(python.exists(), "run scripts/test.sh (it installs Django)");
        let mut child = tokio::process::Command::new(python)
            .arg(root.join("examples/livecounter/origin.py"))
            .arg(format!("127.0.0.1:{port}"))
            .env("HOLDFAST_PUBLISH", publish)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("origin started");
        let log = Arc::new(Mutex::new(Vec::new()));
        // Django says it listens on stdout and logs requests on stderr.
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(1);
        let outputs: [Box<dyn tokio::io::AsyncRead + Unpin + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for output in outputs {
            let (lines, ready) = (log.clone(), ready_tx.clone());
            tokio::spawn(async move {
                let mut reader = BufReader::new(output).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if line.contains("Quit the server") {
                        let _ = ready.try_send(());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let started = tokio::time::timeout(WAIT, ready_rx.recv()).await;
        assert!(
            matches!(started, Ok(Some(()))),
            "origin did not start: {:?}",
            log.lock().unwrap()
        );
        Origin { child, port, log }
    }

    /// How many `GET /counters/1/` the origin answered.
    fn counter_gets(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("\"GET /counters/1/ "))
            .count()
    }
}

/// Waits until page `page` reported `value`.
async fn shows(recorder: &Scripted, page: &str, value: &str) -> bool {
    let wanted = format!("/report?page={page}&value={value}");
    recorder
        .wait_for(WAIT, |s| s.path == wanted)
        .await
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_counter_through_varnish_in_chromium() {
    let recorder = Scripted::start(|_: &Seen| answer(204, &[], "")).await;
    let origin_port = holdfast_tests::free_port();
    let varnish = Varnish::start(&format!("127.0.0.1:{origin_port}")).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", varnish.target()))
        .set(
            "handler",
            "purge_targets",
            format!("http://{}", varnish.target()),
        )
        .run()
        .await;
    let origin = Origin::start(
        origin_port,
        &format!("http://127.0.0.1:{}/publish/", hf.publish_port),
    )
    .await;
    let page = |name: &str| {
        hf.url(&format!(
            "/#page={name}&report=http://{}/report",
            recorder.target()
        ))
    };

    // Two pages show the value; one origin request served both.
    let _a = Browser::open(&page("a"));
    let _b = Browser::open(&page("b"));
    for name in ["a", "b"] {
        assert!(
            shows(&recorder, name, "0").await,
            "page {name}: {:?}\n{}",
            recorder.seen(),
            hf.logs()
        );
    }
    assert_eq!(origin.counter_gets(), 1, "{:?}", origin.log.lock().unwrap());

    // An increment reaches both within a second.
    let posted = Instant::now();
    let reply = Client::new()
        .send("POST", &hf.url("/counters/1/"), &[], Vec::new())
        .await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "1\n"));
    for name in ["a", "b"] {
        assert!(shows(&recorder, name, "1").await, "{}", hf.logs());
    }
    let took = posted.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "increment shown after {took:?}"
    );

    // The increment purged the cached value: the next page load asks the
    // origin once more, and gets the new value.
    let _c = Browser::open(&page("c"));
    assert!(shows(&recorder, "c", "1").await);
    assert_eq!(origin.counter_gets(), 2);

    // The origin goes away. A new page still loads (page and value from
    // Varnish), and what is published meanwhile reaches every page.
    let Origin {
        mut child, port, ..
    } = origin;
    child.kill().await.expect("origin stopped");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
    let _d = Browser::open(&page("d"));
    assert!(shows(&recorder, "d", "1").await, "{:?}", recorder.seen());
    let item = serde_json::json!({"items": [{"channel": "counter-1",
        "formats": {"http-stream": {"content": "event: message\ndata: 42\n\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    for name in ["a", "b", "c", "d"] {
        assert!(shows(&recorder, name, "42").await, "page {name}");
    }
}
