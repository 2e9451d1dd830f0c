//! A Django origin using django-eventstream (with django-grip) behind
//! Holdfast: reliable SSE. Events carry `%I` ids rendered by the build-id
//! filter; a client that reconnects with `Last-Event-ID` gets what it
//! missed from the origin's store and then live events, each exactly once.

use holdfast_tests::harness::python::python;
use holdfast_tests::{free_port, Client, Holdfast, OpenStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(20);

/// The Django app of `tests/python/eventstream_app`, on `port`, publishing
/// to `grip_url`. Killed when dropped, its folder (the event store) removed.
pub(crate) struct Django {
    _server: tokio::process::Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Django {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Django {
    pub(crate) async fn start(port: u16, grip_url: &str) -> Django {
        let app = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/eventstream_app");
        let dir = std::env::temp_dir().join(format!("hf-django-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("events.sqlite3");
        let _ = std::fs::remove_file(&db);
        let command = |args: &[&str]| {
            let mut c = tokio::process::Command::new(python());
            c.current_dir(&app)
                .arg("manage.py")
                .args(args)
                .env("EVENTSTREAM_DB", &db)
                .env("GRIP_URL", grip_url)
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .kill_on_drop(true);
            c
        };
        let migrate = command(&["migrate", "--verbosity", "0"])
            .output()
            .await
            .expect("manage.py migrate ran");
        assert!(
            migrate.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        let mut server = command(&["runserver", "--noreload", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runserver started");
        // Keep draining its output (request logs go to stderr) so it never
        // blocks on a full pipe; keep stderr for failure messages.
        let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stderr = BufReader::new(server.stderr.take().unwrap()).lines();
        let kept = errors.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                if let Ok(mut text) = kept.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
        let announced = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Quit the server") {
                    return true;
                }
            }
            false
        })
        .await;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // It announces itself just before binding: wait for the socket.
        let listening = tokio::time::timeout(WAIT, async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            announced == Ok(true) && listening.is_ok(),
            "Django did not start on port {port}:\n{}",
            errors.lock().map(|e| e.clone()).unwrap_or_default()
        );
        Django {
            _server: server,
            dir,
            port,
        }
    }

    pub(crate) async fn send(&self, n: u32) {
        let reply = Client::new()
            .get(&format!("http://127.0.0.1:{}/send/{n}/", self.port))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

/// `(id, data)` of the `message` events in an SSE body.
pub(crate) fn messages(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|e| e.lines().any(|l| l == "event: message"))
        .map(|e| {
            let field = |name: &str| {
                e.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or("")
                    .to_owned()
            };
            (field("id: "), field("data: "))
        })
        .collect()
}

/// The second half of the reconnect scenario: events 4-6 are sent while
/// the client is away, it reconnects with `last_id` and gets them, then 7-9
/// arrive live. Checks that events 1-9 arrived once each, in order, over
/// both connections; returns their `(id, data)`.
pub(crate) async fn resume(
    hf: &Holdfast,
    django: &Django,
    last_id: &str,
    seen_first: Vec<(String, String)>,
) -> Vec<(String, String)> {
    for n in 4..=6 {
        django.send(n).await;
    }
    let mut second = Client::new()
        .open_with(&hf.url("/events/"), &[("Last-Event-ID", last_id)])
        .await;
    read_event(&mut second, 6).await;
    for n in 7..=9 {
        django.send(n).await;
    }
    read_event(&mut second, 9).await;
    let all: Vec<(String, String)> = seen_first
        .into_iter()
        .chain(messages(&second.text()))
        .collect();
    let numbers: Vec<&str> = all.iter().map(|(_, data)| data.as_str()).collect();
    let expected: Vec<String> = (1..=9).map(|n| format!("{{\"n\": {n}}}")).collect();
    assert_eq!(numbers, expected, "{}\n{}", second.text(), hf.logs());
    all
}

/// Holdfast routing everything to a fresh Django app that publishes to it.
pub(crate) async fn behind_holdfast() -> (Holdfast, Django) {
    let port = free_port();
    let hf = Holdfast::builder()
        .route(format!("* 127.0.0.1:{port}"))
        .run()
        .await;
    let django = Django::start(port, &hf.publish_url("")).await;
    (hf, django)
}

pub(crate) async fn read_event(stream: &mut OpenStream, n: u32) {
    let needle = format!("{{\"n\": {n}}}");
    assert!(
        stream.read_until(&needle, WAIT).await,
        "event {n} not received:\n{}",
        stream.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_eventstream_reconnect_with_last_event_id_gets_every_event_once() {
    let (hf, django) = behind_holdfast().await;
    let client = Client::new();

    let mut first = client.open(&hf.url("/events/")).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("text/event-stream")
    );
    assert!(
        first.read_until("event: stream-open", WAIT).await,
        "{}",
        first.text()
    );
    for n in 1..=3 {
        django.send(n).await;
    }
    read_event(&mut first, 3).await;
    let seen_first = messages(&first.text());
    let last_id = seen_first.last().unwrap().0.clone();
    assert_eq!(
        last_id,
        "test:3",
        "build-id rendered the id: {}",
        first.text()
    );
    drop(first);

    let all = resume(&hf, &django, &last_id, seen_first).await;
    let ids: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    let expected_ids: Vec<String> = (1..=9).map(|n| format!("test:{n}")).collect();
    assert_eq!(ids, expected_ids);
}
