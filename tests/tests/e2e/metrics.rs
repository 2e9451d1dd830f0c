//! `GET /metrics` (Prometheus text from every process: connections, held
//! sessions, subscriptions, publishes, deliveries, origin latency, the
//! edge cache) and `GET /health` (every process reported lately) on the
//! publish port.

use holdfast_tests::harness::holdfast::metric as value;
use holdfast_tests::{answer, Client, Holdfast, Scripted, Seen};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// Polls `path` on the publish port until `ok` holds for the body (the
/// processes report once a second; there is nothing else to wait on).
async fn poll(hf: &Holdfast, path: &str, ok: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let client = Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = client.get(&hf.publish_url(path)).await;
        let (status, text) = (reply.status, reply.text());
        if ok(status, &text) || tokio::time::Instant::now() > deadline {
            return (status, text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn origin(seen: &Seen) -> holdfast_tests::harness::scripted::Answer {
    match seen.path.as_str() {
        "/stream" => answer(
            200,
            &[("Grip-Hold", "stream"), ("Grip-Channel", "m")],
            "open\n",
        ),
        _ => answer(200, &[("Cache-Control", "max-age=60")], "cached\n"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_from_every_process() {
    let origin = Scripted::start(origin).await;
    let hf = Holdfast::builder()
        .route(format!("*,cache {}", origin.target()))
        .run()
        .await;
    let client = Client::new();
    for _ in 0..2 {
        assert_eq!(client.get(&hf.url("/page")).await.text(), "cached\n");
    }
    let mut stream = client.open(&hf.url("/stream")).await;
    assert!(stream.read_until("open\n", WAIT).await);
    let item = serde_json::json!({"items": [{"channel": "m",
        "formats": {"http-stream": {"content": "news\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    assert!(stream.read_until("news\n", WAIT).await);

    let want: &[(&str, &[&str], f64)] = &[
        ("holdfast_held_sessions", &["mode=\"stream\""], 1.0),
        ("holdfast_subscriptions", &[], 1.0),
        ("holdfast_channels", &[], 1.0),
        ("holdfast_items_received_total", &[], 1.0),
        ("holdfast_deliveries_total", &[], 1.0),
        ("holdfast_cache_lookups_total", &["verdict=\"hit\""], 1.0),
        ("holdfast_cache_lookups_total", &["verdict=\"miss\""], 2.0),
        ("holdfast_cache_objects", &[], 1.0),
        ("holdfast_holds_total", &[], 1.0),
        ("holdfast_connections_open", &["transport=\"http1\""], 1.0),
        ("holdfast_origin_response_seconds_count", &[], 2.0),
        (
            "holdfast_origin_response_seconds_bucket",
            &["le=\"+Inf\""],
            2.0,
        ),
    ];
    let (status, text) = poll(&hf, "/metrics", |_, text| {
        want.iter()
            .all(|(name, labels, min)| value(text, name, labels).is_some_and(|v| v >= *min))
    })
    .await;
    assert_eq!(status, 200);
    for (name, labels, min) in want {
        let got = value(&text, name, labels);
        assert!(
            got.is_some_and(|v| v >= *min),
            "{name}{labels:?} = {got:?}, want >= {min}\n{text}"
        );
    }
    assert_eq!(
        value(&text, "holdfast_held_sessions", &["mode=\"stream\""]),
        Some(1.0)
    );
    assert!(
        text.contains("# TYPE holdfast_origin_response_seconds histogram"),
        "{text}"
    );
    for process in [
        "process=\"connmgr\"",
        "process=\"handler",
        "process=\"proxy",
    ] {
        assert!(text.contains(process), "no series from {process}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_which_process_is_silent() {
    let origin = Scripted::start(origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .run()
        .await;
    let (status, body) = poll(&hf, "/health", |status, _| status == 200).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"handler": "ok", "connmgr": "ok", "proxy": "ok"})
    );

    // A stopped proxy stops reporting: unhealthy, saying so.
    let proxy = hf
        .children()
        .into_iter()
        .find(|(_, name)| name == "holdfast-proxy")
        .expect("a proxy process")
        .0;
    kill(Pid::from_raw(proxy), Signal::SIGSTOP).unwrap();
    let (status, body) = poll(&hf, "/health", |status, _| status == 503).await;
    kill(Pid::from_raw(proxy), Signal::SIGCONT).unwrap();
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["connmgr"], "ok");
    assert!(
        json["proxy"].as_str().unwrap().starts_with("silent for"),
        "{json}"
    );
    // Back.
    let (status, _) = poll(&hf, "/health", |status, _| status == 200).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_from_every_process() {
    let origin = Scripted::start(origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .arg("--log-format")
        .arg("json")
        .run()
        .await;
    assert_eq!(Client::new().get(&hf.url("/page")).await.status, 200);
    assert!(hf.wait_log("GET /page", WAIT).await, "{}", hf.logs());
    let mut processes = std::collections::BTreeSet::new();
    for line in hf.logs().lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let process = value["process"].as_str().expect("a process field");
        processes.insert(process.to_owned());
        assert!(
            value.get("level").is_some() || value.get("message").is_some(),
            "{line}"
        );
    }
    let expected = ["connmgr", "handler", "proxy", "runner"];
    assert_eq!(
        processes.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_log_level_1_only_warnings_and_the_lifecycle_are_logged() {
    // The runner knows its processes are ready from their lifecycle lines,
    // which every level keeps: at warn (Pushpin's log_level=1) it used
    // never to say it was ready.
    let origin = Scripted::start(origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("runner", "log_level", "1")
        .run()
        .await;
    assert_eq!(Client::new().get(&hf.url("/page")).await.status, 200);
    for process in ["connmgr", "proxy", "handler"] {
        assert!(
            hf.logs().contains(&format!("{process} ready")),
            "{}",
            hf.logs()
        );
    }
    assert!(
        !hf.logs().contains("GET /page"),
        "no access lines at warn:\n{}",
        hf.logs()
    );
}

/// Pushpin's stats socket: `<type> T<tnetstring>` frames.
fn stats_event(frame: &[u8]) -> (String, holdfast_protocol::value::Value) {
    let space = frame.iter().position(|b| *b == b' ').expect("a type");
    let kind = String::from_utf8_lossy(&frame[..space]).into_owned();
    let body = &frame[space + 1..];
    assert_eq!(body.first(), Some(&b'T'), "TNetString");
    let value = holdfast_protocol::tnetstring::parse_complete(&body[1..]).expect("TNetString");
    (kind, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushpin_stats_socket_events() {
    let origin = Scripted::start(origin).await;
    let port = holdfast_tests::free_port();
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("handler", "stats_spec", format!("tcp://127.0.0.1:{port}"))
        .run()
        .await;
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_rcvtimeo(200).unwrap();
    sub.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let sub = std::sync::Arc::new(std::sync::Mutex::new(sub));
    let next = |sub: std::sync::Arc<std::sync::Mutex<zmq::Socket>>| async move {
        tokio::task::spawn_blocking(move || sub.lock().unwrap().recv_bytes(0).ok())
            .await
            .unwrap()
    };
    // PUB drops what goes out before the subscriber is connected: publish
    // to a channel nobody holds until its `message` event arrives.
    let warm = tokio::time::timeout(WAIT, async {
        loop {
            let item = serde_json::json!({"items": [{"channel": "warm-up",
                "formats": {"http-stream": {"content": "x"}}}]});
            hf.publish(&item.to_string()).await;
            while let Some(frame) = next(sub.clone()).await {
                if stats_event(&frame).0 == "message" {
                    return;
                }
            }
        }
    })
    .await;
    assert!(warm.is_ok(), "no stats events: {}", hf.logs());

    let mut stream = Client::new().open(&hf.url("/stream")).await;
    assert!(stream.read_until("open\n", WAIT).await);
    let item = serde_json::json!({"items": [{"channel": "m", "id": "7",
        "formats": {"http-stream": {"content": "news\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    assert!(stream.read_until("news\n", WAIT).await);
    drop(stream);
    let mut seen = Vec::new();
    let wanted = tokio::time::timeout(WAIT, async {
        loop {
            let Some(frame) = next(sub.clone()).await else {
                continue;
            };
            let (kind, v) = stats_event(&frame);
            let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            let flag = |k: &str| v.get(k).is_some();
            seen.push(match kind.as_str() {
                "conn" if flag("unavailable") => "conn gone".to_owned(),
                "conn" => format!("conn {}", text("type").unwrap_or_default()),
                "sub" if flag("unavailable") => {
                    format!("unsub {}", text("channel").unwrap_or_default())
                }
                "sub" => format!(
                    "sub {} {}",
                    text("mode").unwrap_or_default(),
                    text("channel").unwrap_or_default()
                ),
                "message" => format!(
                    "message {} {}",
                    text("channel").unwrap_or_default(),
                    text("item-id").unwrap_or_default()
                ),
                other => other.to_owned(),
            });
            if seen.iter().any(|s| s == "conn gone") {
                return;
            }
        }
    })
    .await;
    assert!(wanted.is_ok(), "{seen:?}");
    let expected = [
        "conn http",
        "sub stream m",
        "message m 7",
        "unsub m",
        "conn gone",
    ];
    let order: Vec<&String> = seen
        .iter()
        .filter(|s| expected.contains(&s.as_str()))
        .collect();
    assert_eq!(order, expected, "{seen:?}");
}
