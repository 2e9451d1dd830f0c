//! The engine against fake peers, no sockets: the test plays connmgr (it
//! reads what the engine sends through a detached link and sends packets
//! back), the proxy (hand-overs, WebSocket control) and the publishers.
//! Timers run on tokio's paused clock.

use super::*;
use crate::session::QUEUE_MAX;
use bytes::Bytes;
use holdfast_protocol::format::{decode, encode, split_topic, Format};
use holdfast_protocol::handoff::{Accept, Hold, HoldMode, Response};
use holdfast_protocol::handoff::{Channel, Request};
use holdfast_protocol::publish::parse_items_json;
use holdfast_protocol::wscontrol::{Control, Deliver};
use holdfast_protocol::zhttp::{Ids, PacketType};
use holdfast_protocol::zhttp::{KEEP_ALIVE_INTERVAL, SESSION_EXPIRY};

/// Long enough for anything the engine does at once; on the paused clock
/// waiting it out costs nothing.
const QUIET: Duration = Duration::from_secs(1);

/// A running engine and its peers' ends.
struct Peers {
    accepts: mpsc::Sender<Multipart>,
    packets: mpsc::Sender<Packet>,
    inputs: mpsc::Sender<Input>,
    ws_controls: mpsc::Sender<Multipart>,
    /// What the engine sent toward connmgr.
    sent: mpsc::Receiver<Multipart>,
    /// What it sent toward the proxies (WebSocket deliveries).
    ws_out: mpsc::Receiver<Multipart>,
    _token: tokio_util::sync::DropGuard,
}

/// The engine's `message_wait` here: short, so a gap's wait passes quickly.
const MESSAGE_WAIT: Duration = Duration::from_millis(300);

fn start() -> Peers {
    let (link, sent) = Link::detached("handler", Format::TNetString);
    let (ws_tx, ws_out) = mpsc::channel(64);
    let options = Options {
        update_on_first_subscription: false,
        message_wait: MESSAGE_WAIT,
        ..Options::default()
    };
    let engine = Engine::new(link, Vec::new(), options).with_ws_out(ws_tx);
    let (accepts, accepts_rx) = mpsc::channel(8);
    let (packets, packets_rx) = mpsc::channel(8);
    let (inputs, inputs_rx) = mpsc::channel(8);
    let (ws_controls, ws_controls_rx) = mpsc::channel(8);
    let token = CancellationToken::new();
    tokio::spawn(engine.run(
        accepts_rx,
        packets_rx,
        inputs_rx,
        Some(ws_controls_rx),
        token.clone(),
    ));
    Peers {
        accepts,
        packets,
        inputs,
        ws_controls,
        sent,
        ws_out,
        _token: token.drop_guard(),
    }
}

/// A hand-over of session `id` held on `channel`.
fn accept(id: &str, mode: HoldMode, credits: u32, body: &'static [u8]) -> Accept {
    Accept {
        connmgr: "connmgr".into(),
        id: id.into(),
        in_seq: 1,
        out_seq: 5,
        credits,
        peer_address: None,
        request: Request {
            method: "GET".into(),
            uri: "http://example/".into(),
            headers: vec![],
            body: Bytes::new(),
        },
        response: Response {
            code: 200,
            reason: "OK".into(),
            headers: vec![],
            body: Bytes::from_static(body),
        },
        started: false,
        cross_origin: None,
        hold: Hold {
            mode,
            channels: vec![Channel {
                name: "news".into(),
                prev_id: None,
                filters: vec![],
            }],
            timeout: 30,
            keep_alive: None,
            meta: vec![],
            next_link: None,
            gone_link: None,
            session: None,
        },
        origin: None,
    }
}

impl Peers {
    async fn hand_over(&self, accept: Accept) {
        let frame = encode(&accept, Format::TNetString).unwrap();
        self.accepts.send(vec![frame]).await.unwrap();
    }

    async fn publish(&self, json: &str) {
        let items = parse_items_json(json.as_bytes()).unwrap();
        self.inputs.send(Input::Items(items)).await.unwrap();
    }

    async fn stream_item(&self, content: &str) {
        let item = serde_json::json!({"items": [{"channel": "news",
            "formats": {"http-stream": {"content": content}}}]});
        self.publish(&item.to_string()).await;
    }

    /// connmgr's packet for session `id` with sequence `seq`.
    async fn connmgr_sends(&self, kind: PacketType, id: &str, seq: u32, credits: Option<u32>) {
        let mut packet = Packet::new(kind, "connmgr", id, seq);
        packet.credits = credits;
        self.packets.send(packet).await.unwrap();
    }

    /// The next packet the engine sends (to whom, what), if one comes.
    async fn next(&mut self) -> Option<(String, Packet)> {
        let msg = tokio::time::timeout(QUIET, self.sent.recv()).await.ok()??;
        let (to, frame) = split_topic(&msg[0]).unwrap();
        Some((
            String::from_utf8_lossy(to).into_owned(),
            decode(frame).unwrap(),
        ))
    }

    async fn expect(&mut self) -> Packet {
        let (to, packet) = self.next().await.expect("a packet for connmgr");
        assert_eq!(to, "connmgr");
        packet
    }
}

/// Lets the engine take everything sent to it so far: the paused clock
/// moves only once every task waits, so a sleep on it is an ordering, not
/// a guess (packets and publishes come in on different channels).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn seqs(packet: &Packet) -> Vec<(String, Option<u32>)> {
    match &packet.id {
        Some(Ids::Many(list)) => list.iter().map(|e| (e.id.clone(), e.seq)).collect(),
        Some(Ids::One(id)) => vec![(id.clone(), packet.seq)],
        None => vec![],
    }
}

// === accept ===

#[tokio::test(start_paused = true)]
async fn a_stream_hand_over_sends_its_head_then_numbered_deliveries() {
    let mut peers = start();
    peers
        .hand_over(accept("s1", HoldMode::Stream, 1000, b"start\n"))
        .await;
    let head = peers.expect().await;
    assert_eq!((head.code, head.seq, head.more), (Some(200), Some(5), true));
    assert_eq!(
        head.from.as_deref(),
        Some("handler"),
        "it names the new owner"
    );
    assert_eq!(head.body.as_deref(), Some(&b"start\n"[..]));
    for (content, seq) in [("a\n", 6), ("b\n", 7)] {
        peers.stream_item(content).await;
        let delivery = peers.expect().await;
        assert_eq!(seqs(&delivery), vec![("s1".to_owned(), Some(seq))]);
        assert_eq!(delivery.body.as_deref(), Some(content.as_bytes()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_hand_over_announces_the_owner_and_answers_at_its_timeout() {
    let mut peers = start();
    peers
        .hand_over(accept("lp", HoldMode::Response, 1000, b"nothing new\n"))
        .await;
    let hello = peers.expect().await;
    assert_eq!((hello.kind(), hello.seq), (&PacketType::KeepAlive, Some(5)));
    // Nothing for 30 s: the timeout response, whole.
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(peers.next().await.is_none(), "not before the timeout");
    let answer = peers.expect().await;
    assert_eq!((answer.code, answer.more), (Some(200), false));
    assert_eq!(answer.body.as_deref(), Some(&b"nothing new\n"[..]));
}

// === fan-out ===

#[tokio::test(start_paused = true)]
async fn a_long_poll_gets_the_published_response() {
    let mut peers = start();
    peers
        .hand_over(accept("lp", HoldMode::Response, 1000, b"timeout\n"))
        .await;
    peers.expect().await;
    let item = serde_json::json!({"items": [{"channel": "news",
        "formats": {"http-response": {"code": 201, "body": "fresh\n"}}}]});
    peers.publish(&item.to_string()).await;
    let answer = peers.expect().await;
    assert_eq!((answer.code, answer.seq), (Some(201), Some(6)));
    assert_eq!(answer.body.as_deref(), Some(&b"fresh\n"[..]));
}

#[tokio::test(start_paused = true)]
async fn items_wait_for_credits_and_go_as_credits_come() {
    let mut peers = start();
    peers
        .hand_over(accept("s1", HoldMode::Stream, 3, b""))
        .await;
    peers.expect().await;
    peers.stream_item("hello\n").await;
    // What the credits allow goes, the rest waits.
    let part = peers.expect().await;
    assert_eq!(
        (part.body.as_deref(), part.seq),
        (Some(&b"hel"[..]), Some(6))
    );
    assert!(peers.next().await.is_none(), "out of credits: it waits");
    peers
        .connmgr_sends(PacketType::Credit, "s1", 1, Some(100))
        .await;
    let rest = peers.expect().await;
    assert_eq!(
        (rest.body.as_deref(), rest.seq),
        (Some(&b"lo\n"[..]), Some(7))
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_a_hundred_items_behind_is_disconnected() {
    let mut peers = start();
    peers
        .hand_over(accept("slow", HoldMode::Stream, 0, b""))
        .await;
    peers.expect().await;
    for n in 0..=QUEUE_MAX {
        peers.stream_item(&format!("{n}\n")).await;
    }
    let cancel = peers.expect().await;
    assert_eq!(cancel.kind(), &PacketType::Cancel);
    peers.stream_item("after\n").await;
    assert!(peers.next().await.is_none(), "the session is gone");
}

#[tokio::test(start_paused = true)]
async fn a_cancel_from_connmgr_ends_the_session() {
    let mut peers = start();
    peers
        .hand_over(accept("s1", HoldMode::Stream, 100, b""))
        .await;
    peers.expect().await;
    peers.connmgr_sends(PacketType::Cancel, "s1", 1, None).await;
    settle().await;
    peers.stream_item("late\n").await;
    assert!(peers.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_packet_out_of_order_ends_the_session_with_a_cancel() {
    let mut peers = start();
    peers
        .hand_over(accept("s1", HoldMode::Stream, 100, b""))
        .await;
    peers.expect().await;
    peers
        .connmgr_sends(PacketType::KeepAlive, "s1", 7, None)
        .await;
    let cancel = peers.expect().await;
    assert_eq!(cancel.kind(), &PacketType::Cancel);
    peers.stream_item("late\n").await;
    assert!(peers.next().await.is_none());
}

// === timers ===

#[tokio::test(start_paused = true)]
async fn a_quiet_session_says_it_is_alive_and_a_silent_connmgr_ends_it() {
    let mut peers = start();
    peers
        .hand_over(accept("s1", HoldMode::Stream, 100, b""))
        .await;
    peers.expect().await;
    tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
    let ka = peers.expect().await;
    assert_eq!((ka.kind(), ka.seq), (&PacketType::KeepAlive, Some(6)));
    // connmgr stays silent: the session is dropped at its expiry.
    tokio::time::sleep(SESSION_EXPIRY - KEEP_ALIVE_INTERVAL + QUIET).await;
    peers.stream_item("late\n").await;
    let got = peers.next().await;
    assert!(got.is_none(), "dropped after 60 s of silence: {got:?}");
}

// === websocket ===

#[tokio::test(start_paused = true)]
async fn websocket_subscriptions_get_their_publishes_through_their_proxy() {
    let mut peers = start();
    let control = Control {
        kind: "subscribe".into(),
        proxy: "proxy-2".into(),
        id: "ws1".into(),
        channel: Some("room".into()),
        ..Control::default()
    };
    let hello = Control {
        kind: "hello".into(),
        proxy: "proxy-2".into(),
        ..Control::default()
    };
    for control in [control, hello] {
        let frame = encode(&control, Format::TNetString).unwrap();
        peers.ws_controls.send(vec![frame]).await.unwrap();
    }
    // The answer to hello comes once the subscription before it is made.
    let answer = tokio::time::timeout(QUIET, peers.ws_out.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decode::<Deliver>(&answer[1]).unwrap().kind, "hello");
    let item = serde_json::json!({"items": [{"channel": "room",
        "formats": {"ws-message": {"content": "hi"}}}]});
    peers.publish(&item.to_string()).await;
    let msg = tokio::time::timeout(QUIET, peers.ws_out.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg[0], b"proxy-2 ".to_vec());
    let deliver: Deliver = decode(&msg[1]).unwrap();
    assert_eq!(
        (deliver.ids, deliver.kind.as_str(), &deliver.content[..]),
        (vec!["ws1".to_owned()], "text", &b"hi"[..])
    );
}

// === recovery ===

/// A publish of item `id` on `news` after `prev` (none: no prev-id).
fn chained_item(id: &str, prev: Option<&str>, content: &str) -> String {
    let mut item = serde_json::json!({"channel": "news", "id": id,
        "formats": {"http-stream": {"content": content},
                    "http-response": {"body": content}}});
    if let Some(prev) = prev {
        item["prev-id"] = prev.into();
    }
    serde_json::json!({ "items": [item] }).to_string()
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_missed_an_item_and_cannot_ask_ends_where_it_was() {
    let mut peers = start();
    peers
        .hand_over(accept("s1", HoldMode::Stream, 100, b""))
        .await;
    peers.expect().await;
    // The channel's first item sets where it stands; the next follows on.
    peers.publish(&chained_item("1", Some("0"), "one\n")).await;
    assert_eq!(peers.expect().await.body.as_deref(), Some(&b"one\n"[..]));
    peers.publish(&chained_item("2", Some("1"), "two\n")).await;
    assert_eq!(peers.expect().await.body.as_deref(), Some(&b"two\n"[..]));
    // A gap (3 is missing): the sequencer holds 4 back for a while, then
    // gives up on 3. The session, which got 2, must not take 4, and has
    // no next link to ask for 3: it ends, so its client comes back from 2.
    peers.publish(&chained_item("4", Some("3"), "four\n")).await;
    let early = tokio::time::timeout(MESSAGE_WAIT / 2, peers.sent.recv()).await;
    assert!(early.is_err(), "held back while 3 may come");
    let end = peers.expect().await;
    assert_eq!(
        (end.body.as_deref(), end.more),
        (Some(&b""[..]), false),
        "a gap is never papered over: the stream ends"
    );
    peers.publish(&chained_item("5", Some("4"), "five\n")).await;
    assert!(peers.next().await.is_none(), "nothing after its end");
}

#[tokio::test(start_paused = true)]
async fn items_overtaking_a_channels_first_one_are_taken_in_their_order_then_a_gap_ends_the_stream()
{
    // What a bus can do to items published through different instances:
    // 3 comes before the channel's first item 1, whose successor is 2.
    // Nothing knows where the channel stands yet, so each is taken as it
    // comes; then 4 names 3, but the stream got 2 last: it ends, instead
    // of taking nothing more while it stays open.
    let mut peers = start();
    peers
        .hand_over(accept("s1", HoldMode::Stream, 100, b""))
        .await;
    peers.expect().await;
    for (id, prev, content) in [
        ("3", Some("2"), "3\n"),
        ("1", None, "1\n"),
        ("2", Some("1"), "2\n"),
    ] {
        peers.publish(&chained_item(id, prev, content)).await;
        assert_eq!(
            peers.expect().await.body.as_deref(),
            Some(content.as_bytes())
        );
    }
    peers.publish(&chained_item("4", Some("3"), "4\n")).await;
    let end = peers.expect().await;
    assert_eq!((end.body.as_deref(), end.more), (Some(&b""[..]), false));
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_that_missed_an_item_and_cannot_ask_gets_its_timeout_answer() {
    let mut peers = start();
    peers
        .hand_over(accept("lp", HoldMode::Response, 1000, b"nothing new\n"))
        .await;
    peers.expect().await;
    let mut accepted = accept("lp2", HoldMode::Response, 1000, b"nothing new\n");
    accepted.hold.channels[0].prev_id = Some("1".into());
    peers.hand_over(accepted).await;
    peers.expect().await;
    // lp2 is at 1, and 3 names 2: lp2 missed 2 and has no origin to ask.
    // lp, which names no position, takes 3.
    peers
        .publish(&chained_item("3", Some("2"), "three\n"))
        .await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let answer = peers.expect().await;
        assert_eq!((answer.code, answer.more), (Some(200), false));
        answers
            .push(String::from_utf8_lossy(answer.body.as_deref().unwrap_or_default()).into_owned());
    }
    answers.sort();
    assert_eq!(answers, ["nothing new\n", "three\n"]);
}
