use super::*;
use bytes::Bytes;

fn endpoint(now: Instant) -> Endpoint {
    Endpoint::new(Arc::from("us"), "s1", now)
}

fn from_peer(kind: PacketType, seq: Option<u32>) -> Packet {
    let mut p = Packet::new(kind, "peer", "s1", 0);
    p.seq = seq;
    p
}

fn data(seq: u32, len: usize) -> Packet {
    let mut p = from_peer(PacketType::Data, Some(seq));
    p.body = Some(Bytes::from(vec![b'x'; len]));
    p
}

#[test]
fn nothing_is_numbered_until_it_can_be_sent() {
    let now = Instant::now();
    let mut e = endpoint(now);
    // No peer yet (the proxy has not spoken): a keep-alive made now is not
    // sent, and uses no number.
    let mut early = e.packet(PacketType::KeepAlive);
    assert_eq!(e.stamp(&mut early, now), None);
    assert_eq!(early.seq, None);
    assert!(!e.keep_alive_due(now + KEEP_ALIVE_INTERVAL));
    e.receive(&from_peer(PacketType::KeepAlive, Some(0)), now)
        .unwrap();
    // A head made first and held back, a credit made and sent meanwhile:
    // numbers follow the order they leave in.
    let mut head = e.packet(PacketType::Data);
    let mut credit = e.grant(10).unwrap();
    assert_eq!(e.stamp(&mut credit, now), Some("peer"));
    assert_eq!(e.stamp(&mut head, now), Some("peer"));
    assert_eq!((credit.seq, head.seq), (Some(0), Some(1)));
    assert_eq!(e.next_seq(now), Some(2));
    assert_eq!(e.seqs(), (1, 3));
}

#[test]
fn packets_must_come_in_sequence() {
    let now = Instant::now();
    let mut e = endpoint(now);
    e.receive(&from_peer(PacketType::KeepAlive, Some(0)), now)
        .unwrap();
    assert_eq!(
        e.receive(&from_peer(PacketType::KeepAlive, Some(2)), now),
        Err(SessionError::OutOfOrder {
            expected: 1,
            got: 2
        })
    );
    // A cancel is taken whatever its seq (none, or 0 from a peer that does
    // not know the session), and moves nothing.
    e.receive(&from_peer(PacketType::Cancel, None), now)
        .unwrap();
    e.receive(&from_peer(PacketType::Cancel, Some(0)), now)
        .unwrap();
    assert_eq!(e.seqs().0, 1);
}

#[test]
fn credits_and_debt() {
    let now = Instant::now();
    let mut e = endpoint(now);
    assert!(!e.can_send());
    let mut grant = from_peer(PacketType::Credit, Some(0));
    grant.credits = Some(100);
    e.receive(&grant, now).unwrap();
    assert_eq!(e.take_credits(60), 60);
    assert_eq!(e.take_credits(60), 40);
    assert!(!e.can_send());
    // A message may go past what is left; the debt is paid back first.
    e.add_credits(10);
    e.spend(1000);
    assert!(!e.can_send());
    e.add_credits(990);
    assert!(!e.can_send());
    e.add_credits(1);
    assert_eq!(e.credits(), 1);
}

#[test]
fn a_peer_sending_past_its_grant_is_refused() {
    let now = Instant::now();
    let mut e = endpoint(now);
    assert_eq!(e.offer(100), 100);
    e.receive(&data(0, 60), now).unwrap();
    e.receive(&data(1, 40), now).unwrap();
    assert_eq!(
        e.receive(&data(2, 1), now),
        Err(SessionError::BeyondCredits { over: 1 })
    );
    // With room for one message over, a large one is taken, not two.
    let mut ws = endpoint(now);
    ws.set_overshoot(1000);
    ws.offer(10);
    ws.receive(&data(0, 900), now).unwrap();
    assert!(ws.receive(&data(1, 200), now).is_err());
    // A request's first packet carries body unasked; a credit has none.
    let mut first = endpoint(now);
    let mut request = data(0, 500);
    request.method = Some("POST".into());
    first.receive(&request, now).unwrap();
    assert!(first.grant(0).is_none());
    assert_eq!(first.grant(5).unwrap().credits, Some(5));
    first.receive(&data(1, 5), now).unwrap();
}

#[test]
fn pings_and_pongs_cost_credits_closes_do_not() {
    let now = Instant::now();
    let mut e = endpoint(now);
    e.offer(4);
    let mut ping = from_peer(PacketType::Ping, Some(0));
    ping.body = Some(Bytes::from_static(b"pi"));
    e.receive(&ping, now).unwrap();
    let mut close = from_peer(PacketType::Close, Some(1));
    close.body = Some(Bytes::from_static(b"a long reason"));
    e.receive(&close, now).unwrap();
    let mut pong = from_peer(PacketType::Pong, Some(2));
    pong.body = Some(Bytes::from_static(b"pon"));
    assert!(e.receive(&pong, now).is_err());
}

#[test]
fn a_hand_over_silences_until_the_new_owner_speaks() {
    let now = Instant::now();
    let mut e = Endpoint::resume(Arc::from("us"), "s1", "proxy", (3, 7), 500, now);
    assert_eq!(e.credits(), 500);
    e.pause();
    let mut ka = e.packet(PacketType::KeepAlive);
    assert_eq!(e.stamp(&mut ka, now), None);
    assert!(e.cancel().is_none());
    assert!(!e.keep_alive_due(now + KEEP_ALIVE_INTERVAL));
    let mut hello = from_peer(PacketType::KeepAlive, Some(3));
    hello.from = Some("handler".into());
    e.receive(&hello, now).unwrap();
    assert_eq!(e.stamp(&mut ka, now), Some("handler"));
    assert_eq!(ka.seq, Some(7));
    assert!(e.cancel().is_some());
}

#[tokio::test(start_paused = true)]
async fn keep_alive_and_expiry() {
    let start = Instant::now();
    let mut e = endpoint(start);
    e.receive(&from_peer(PacketType::KeepAlive, Some(0)), start)
        .unwrap();
    assert_eq!(e.next_deadline(), start + KEEP_ALIVE_INTERVAL);
    tokio::time::sleep_until(e.next_deadline()).await;
    let now = Instant::now();
    assert!(e.keep_alive_due(now) && !e.expired(now));
    let mut ka = e.packet(PacketType::KeepAlive);
    e.stamp(&mut ka, now);
    assert!(!e.keep_alive_due(now));
    // The peer stays silent: expiry comes before the next keep-alive.
    assert_eq!(e.next_deadline(), start + SESSION_EXPIRY);
    tokio::time::sleep_until(e.next_deadline()).await;
    assert!(e.expired(Instant::now()));
    // Hearing from it (also by a fast path) starts the clock again.
    e.heard(Instant::now());
    assert!(!e.expired(Instant::now()));
}
