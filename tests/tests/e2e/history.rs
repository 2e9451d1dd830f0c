//! Channel history (`[handler] history_size`): a client that comes back
//! with where it was gets what it missed from Holdfast, in order and once,
//! without the origin being asked again: a stream whose origin names its
//! position (`Grip-Channel: ...; prev-id=`), and an SSE client with
//! `Last-Event-ID` whose hold comes from the edge cache while the origin
//! is down.

use holdfast_tests::{answer, Client, Holdfast, Scripted};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Publishes the items `ids` names and waits until history holds the
/// last (nobody need be listening).
async fn publish_while_away(
    hf: &Holdfast,
    ids: std::ops::RangeInclusive<usize>,
    body: impl Fn(usize) -> String,
) {
    let last = *ids.end();
    for id in ids {
        assert_eq!(hf.publish(&body(id)).await.0, 200);
    }
    assert!(
        hf.wait_metric("holdfast_history_items", &[], last as f64, WAIT)
            .await,
        "{}",
        hf.logs()
    );
}

/// A publish body: item `id` on `channel` with an `http-stream` format,
/// naming `id - 1` as its previous.
pub(crate) fn item(channel: &str, id: usize, content: String) -> String {
    item_of(
        channel,
        id,
        serde_json::json!({"http-stream": {"content": content}}),
    )
}

/// A publish body: item `id` on `channel` with `formats`, naming `id - 1`
/// as its previous.
fn item_of(channel: &str, id: usize, formats: serde_json::Value) -> String {
    let mut item =
        serde_json::json!({"channel": channel, "id": id.to_string(), "formats": formats});
    if id > 1 {
        item["prev-id"] = (id - 1).to_string().into();
    }
    serde_json::json!({"items": [item]}).to_string()
}

/// How many times each of `needles` is in `text`, in order of first sight.
fn order_of(text: &str, needles: &[String]) -> Vec<(usize, usize)> {
    needles
        .iter()
        .map(|n| {
            (
                text.find(n.as_str()).unwrap_or(usize::MAX),
                text.matches(n.as_str()).count(),
            )
        })
        .collect()
}

/// A stream hold on `h` whose position (`?last=`) the origin names. GRIP
/// asks a stream with a position for a next link (how the origin would be
/// asked again); history makes it unnecessary, so it is far off.
pub(crate) fn positioned_hold(
    seen: &holdfast_tests::Seen,
) -> holdfast_tests::harness::scripted::Answer {
    let channel = match seen.path.split_once("?last=") {
        Some((_, last)) => format!("h; prev-id={last}"),
        None => "h".to_owned(),
    };
    answer(
        200,
        &[
            ("Grip-Hold", "stream"),
            ("Grip-Channel", &channel),
            ("Grip-Link", "</s/next>; rel=next; timeout=600"),
        ],
        "initial\n",
    )
}

/// An SSE stream hold on `ev` that the edge cache keeps, starting with
/// `first` (a comment, a `retry:`).
fn cached_sse(
    first: &'static str,
) -> impl Fn(&holdfast_tests::Seen) -> holdfast_tests::harness::scripted::Answer {
    move |_| {
        answer(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "s-maxage=300"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "ev"),
            ],
            first,
        )
    }
}

/// Holdfast caching `origin`'s answers, with channel history.
async fn caching_with_history(origin: &Scripted) -> Holdfast {
    Holdfast::builder()
        .route(format!("*,cache {}", origin.target()))
        .set("handler", "history_size", "50")
        .run()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_coming_back_with_its_prev_id_gets_what_it_missed_from_history() {
    let origin = Scripted::start(positioned_hold).await;
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("handler", "history_size", "50")
        .run()
        .await;
    let client = Client::new();
    let mut first = client.open(&hf.url("/s")).await;
    assert!(first.read_until("initial\n", WAIT).await);
    for id in 1..=3 {
        let reply = hf.publish(&item("h", id, format!("item-{id}\n"))).await;
        assert_eq!(reply.0, 200);
    }
    assert!(first.read_until("item-3\n", WAIT).await, "{}", first.text());
    drop(first);
    // Published while nobody listens here.
    publish_while_away(&hf, 4..=6, |id| item("h", id, format!("item-{id}\n"))).await;
    let mut back = client.open(&hf.url("/s?last=3")).await;
    assert!(
        back.read_until("item-6\n", WAIT).await,
        "{}\n{}",
        back.text(),
        hf.logs()
    );
    let wanted: Vec<String> = (4..=6).map(|i| format!("item-{i}\n")).collect();
    let seen = order_of(&back.text(), &wanted);
    assert!(seen.iter().all(|(_, n)| *n == 1), "once each: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "in order: {seen:?}"
    );
    assert!(!back.text().contains("item-3\n"));
    // Live items follow the replayed ones.
    assert_eq!(hf.publish(&item("h", 7, "item-7\n".into())).await.0, 200);
    assert!(back.read_until("item-7\n", WAIT).await, "{}", back.text());
    // The origin was asked for the two holds only: nothing was recovered
    // from it (no Grip-Last request).
    let asked = origin.seen();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|s| s.header("grip-last").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_back_with_last_event_id_recovers_while_the_origin_is_down() {
    let origin = Scripted::start(cached_sse(":ok\n\n")).await;
    let hf = caching_with_history(&origin).await;
    let event = |id: usize| item("ev", id, format!("id: {id}\ndata: e-{id}\n\n"));
    let client = Client::new();
    let mut first = client.open(&hf.url("/events")).await;
    assert!(first.read_until(":ok\n\n", WAIT).await);
    for id in 1..=3 {
        assert_eq!(hf.publish(&event(id)).await.0, 200);
    }
    assert!(
        first.read_until("data: e-3\n", WAIT).await,
        "{}",
        first.text()
    );
    drop(first);
    // The origin goes away; events go on.
    drop(origin);
    publish_while_away(&hf, 4..=8, event).await;
    let mut back = client
        .open_with(&hf.url("/events"), &[("Last-Event-ID", "3")])
        .await;
    assert!(
        back.read_until("data: e-8\n", WAIT).await,
        "{}",
        back.text()
    );
    let wanted: Vec<String> = (4..=8).map(|i| format!("data: e-{i}\n")).collect();
    let seen = order_of(&back.text(), &wanted);
    assert!(seen.iter().all(|(_, n)| *n == 1), "once each: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "in order: {seen:?}"
    );
    assert!(!back.text().contains("data: e-3\n"));
    assert!(
        hf.wait_metric("holdfast_history_replayed_total", &[], 5.0, WAIT)
            .await
    );
}

/// A WebSocket-over-HTTP origin that subscribes the session to `w` from
/// where the client says it was (`?last=`), with the `prev-id` field of the
/// subscribe control message.
pub(crate) fn ws_origin(seen: &holdfast_tests::Seen) -> holdfast_tests::harness::scripted::Answer {
    const EVENTS: (&str, &str) = ("Content-Type", "application/websocket-events");
    if seen.body != "OPEN\r\n" {
        return answer(200, &[EVENTS], "");
    }
    let last = seen.path.split_once("?last=").map_or("", |(_, l)| l);
    let subscribe = format!(r#"c:{{"type":"subscribe","channel":"w","prev-id":"{last}"}}"#);
    answer(
        200,
        &[EVENTS, ("Sec-WebSocket-Extensions", "grip")],
        &format!("OPEN\r\nTEXT {:x}\r\n{subscribe}\r\n", subscribe.len()),
    )
}

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

pub(crate) async fn next_text(ws: &mut Ws) -> String {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("valid");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return text.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http_session_resumes_from_history() {
    let origin = Scripted::start(ws_origin).await;
    let hf = Holdfast::builder()
        .route(format!("* {},over_http", origin.target()))
        .set("handler", "history_size", "50")
        .run()
        .await;
    let message = |id: usize| {
        item_of(
            "w",
            id,
            serde_json::json!({"ws-message": {"content": format!("m-{id}")}}),
        )
    };
    // Published while the client is away.
    publish_while_away(&hf, 1..=3, message).await;
    let url = format!("ws://{}/w?last=1", hf.addr());
    let stream = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("WebSocket opened");
    assert_eq!(next_text(&mut ws).await, "m-2", "{}", hf.logs());
    assert_eq!(next_text(&mut ws).await, "m-3");
    assert!(
        hf.wait_metric("holdfast_history_replayed_total", &[], 2.0, WAIT)
            .await
    );
    assert_eq!(hf.publish(&message(4)).await.0, 200);
    assert_eq!(next_text(&mut ws).await, "m-4");
}

/// The npm `eventsource` client (`.npm/sse-client.mjs`, installed by
/// `scripts/npm-env.sh`) reading `url`: its lines as they come.
fn eventsource_client(
    url: &str,
) -> (
    tokio::process::Child,
    tokio::sync::mpsc::Receiver<serde_json::Value>,
) {
    use tokio::io::AsyncBufReadExt;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.npm/sse-client.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs .npm/sse-client.mjs (scripts/npm-env.sh installs it)");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(value) = serde_json::from_str(&line) {
                if tx.send(value).await.is_err() {
                    return;
                }
            }
        }
    });
    (child, rx)
}

/// Lines until one `done` accepts (which is returned with those before it).
async fn lines_until(
    rx: &mut tokio::sync::mpsc::Receiver<serde_json::Value>,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Some(line) = rx.recv().await {
            let last = done(&line);
            seen.push(line);
            if last {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen:?}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventsource_client_away_for_30_s_recovers_every_event_with_the_origin_stopped() {
    // Clients wait 30 s before they reconnect.
    let origin = Scripted::start(cached_sse("retry: 30000\n\n")).await;
    let hf = caching_with_history(&origin).await;
    let event = |id: usize| item("ev", id, format!("id: {id}\ndata: e-{id}\n\n"));
    let (_client, mut lines) = eventsource_client(&hf.url("/events"));
    let data_is = |want: &'static str| move |l: &serde_json::Value| l["data"] == want;
    lines_until(&mut lines, WAIT, |l| l["open"] == true).await;
    for id in 1..=3 {
        assert_eq!(hf.publish(&event(id)).await.0, 200);
    }
    let mut got = lines_until(&mut lines, WAIT, data_is("e-3")).await;
    // The stream ends; the client is away for its 30 s; the origin stops.
    let close = serde_json::json!({"items": [{"channel": "ev",
        "formats": {"http-stream": {"action": "close"}}}]});
    assert_eq!(hf.publish(&close.to_string()).await.0, 200);
    lines_until(&mut lines, WAIT, |l| l["error"] == true).await;
    drop(origin);
    for id in 4..=8 {
        assert_eq!(hf.publish(&event(id)).await.0, 200);
    }
    got.extend(lines_until(&mut lines, Duration::from_secs(60), data_is("e-8")).await);
    let data: Vec<&str> = got.iter().filter_map(|l| l["data"].as_str()).collect();
    let want: Vec<String> = (1..=8).map(|i| format!("e-{i}")).collect();
    assert_eq!(data, want, "every event once, in order");
    let last_ids: Vec<&str> = got.iter().filter_map(|l| l["id"].as_str()).collect();
    assert_eq!(last_ids.last(), Some(&"8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_back_with_its_prev_id_is_answered_from_history() {
    // A long-poll on `lp` from where the client says it was (`?last=`).
    let origin = Scripted::start(|seen| {
        let channel = match seen.path.split_once("?last=") {
            Some((_, last)) => format!("lp; prev-id={last}"),
            None => "lp".to_owned(),
        };
        answer(
            200,
            &[("Grip-Hold", "response"), ("Grip-Channel", &channel)],
            "timed out\n",
        )
    })
    .await;
    // Counting the origin's asks: without this, a loaded machine that takes
    // over a second to get to the last poll sees the first-subscription
    // update ask the origin a fourth time (with Grip-Last).
    let hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("handler", "history_size", "50")
        .set("handler", "update_on_first_subscription", "false")
        .run()
        .await;
    let answer_item = |id: usize| {
        item_of(
            "lp",
            id,
            serde_json::json!({"http-response": {"body": format!("b-{id}\n")}}),
        )
    };
    // Published while nobody polls.
    publish_while_away(&hf, 1..=3, answer_item).await;
    let client = Client::new();
    // Each poll is answered at once with the item after its position.
    for (last, body) in [(1, "b-2\n"), (2, "b-3\n")] {
        let reply = client.get(&hf.url(&format!("/lp?last={last}"))).await;
        assert_eq!((reply.status, reply.text().as_str()), (200, body));
    }
    // Up to date: held until the next publish.
    let poll = {
        let (client, url) = (client.clone(), hf.url("/lp?last=3"));
        tokio::spawn(async move { client.get(&url).await })
    };
    assert!(origin
        .wait_for(WAIT, |s| s.path == "/lp?last=3")
        .await
        .is_some());
    assert!(
        hf.wait_metric("holdfast_held_sessions", &["mode=\"response\""], 1.0, WAIT)
            .await
    );
    assert_eq!(hf.publish(&answer_item(4)).await.0, 200);
    let reply = poll.await.unwrap();
    assert_eq!(reply.text(), "b-4\n");
    // Three holds asked of the origin, no recovery (Grip-Last).
    let asked = origin.seen();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked.iter().all(|s| s.header("grip-last").is_none()));
}
