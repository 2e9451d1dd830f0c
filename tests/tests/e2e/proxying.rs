//! Plain HTTP through connmgr → proxy → origin and back.

use bytes::Bytes;
use holdfast_tests::harness::origin::{echoed_header, fnv1a, pattern, FNV_OFFSET};
use holdfast_tests::{free_port, raw_exchange, Client, Holdfast, Origin};
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_with_bodies() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();

    let reply = client.get(&hf.url("/hello?x=1")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/hello?x=1");
    assert_eq!(
        echoed_header(&echo, "host").as_deref(),
        Some(hf.addr().as_str())
    );

    let body = "a=1&b=two".repeat(100);
    let reply = client
        .send(
            "POST",
            &hf.url("/form"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.clone(),
        )
        .await;
    let echo = reply.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(
        echo["body_hash"],
        format!("{:016x}", fnv1a(body.as_bytes(), FNV_OFFSET))
    );
    assert_eq!(
        echoed_header(&echo, "content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_megabytes_streamed_both_ways() {
    const SIZE: usize = 5 * 1024 * 1024;
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();

    // Upload: chunked, fed 64 KiB at a time, so it must stream through the credits.
    let (tx, rx) = mpsc::channel(4);
    let feeder = tokio::spawn(async move {
        let mut sent = 0;
        let mut hash = FNV_OFFSET;
        while sent < SIZE {
            let chunk: Vec<u8> = (sent..(sent + 65536).min(SIZE))
                .map(|i| (i * 7 % 256) as u8)
                .collect();
            hash = fnv1a(&chunk, hash);
            sent += chunk.len();
            tx.send(Bytes::from(chunk)).await.unwrap();
        }
        hash
    });
    let reply = client.send_streamed("PUT", &hf.url("/upload"), rx).await;
    let hash = feeder.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["body_len"], SIZE);
    assert_eq!(echo["body_hash"], format!("{hash:016x}"));
    assert_eq!(
        echoed_header(&echo, "transfer-encoding").as_deref(),
        Some("chunked")
    );

    // Download: the origin streams it chunked.
    let reply = client.get(&hf.url(&format!("/download/{SIZE}"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), SIZE);
    assert!(
        reply.body.iter().enumerate().all(|(i, b)| *b == pattern(i)),
        "downloaded bytes differ"
    );
}

/// The proxy holds a response head back to send it with a short body in
/// one packet; credits for the request body sent meanwhile must not
/// overtake it (connmgr ended such requests with 502 "Protocol error").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_credits_do_not_overtake_a_held_back_head() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let (tx, rx) = mpsc::channel(1);
    let feed = async {
        tx.send(Bytes::from(vec![b'a'; 1000])).await.unwrap();
        // The rest of the body once the origin has the request (and has
        // answered its head): the proxy now holds that head back.
        assert!(origin.wait_requests(1, Duration::from_secs(10)).await);
        tx.send(Bytes::from(vec![b'b'; 1000])).await.unwrap();
        drop(tx);
    };
    let (client, url) = (Client::new(), hf.url("/late-body"));
    let (reply, ()) = tokio::join!(client.send_streamed("POST", &url, rx), feed);
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), hf.logs());
    assert_eq!(reply.text(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_responses_stay_chunked() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let raw = raw_exchange(
        &hf.addr(),
        b"GET /chunks/50 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let (head, _) = raw.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let expected: String = (0..50).map(|i| format!("chunk {i}\n")).collect();
    let body = Client::new().get(&hf.url("/chunks/50")).await;
    assert_eq!(body.text(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_is_reused() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    // Two requests pipelined on one connection, the second closes it.
    let raw = raw_exchange(
        &hf.addr(),
        b"GET /one HTTP/1.1\r\nHost: test\r\n\r\nGET /two HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
    assert!(
        raw.contains("\"uri\":\"/one\"") && raw.contains("\"uri\":\"/two\""),
        "{raw}"
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_after_bodyless_ones_is_served_on_the_same_connection() {
    // connmgr answers bodyless GETs itself and hands the connection to
    // hyper at the first other request, with the bytes already read: the
    // POST's head and body and the GET pipelined behind it.
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let raw = raw_exchange(
        &hf.addr(),
        b"GET /one HTTP/1.1\r\nHost: test\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello\
          GET /three HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 3, "{raw}");
    let one = raw.find("\"uri\":\"/one\"").expect("/one answered");
    let two = raw.find("\"uri\":\"/two\"").expect("/two answered");
    let three = raw.find("\"uri\":\"/three\"").expect("/three answered");
    assert!(one < two && two < three, "answered in order: {raw}");
    assert!(raw.contains("\"body_len\":5"), "the POST's body: {raw}");
    assert_eq!(raw.matches("date: ").count(), 3, "{raw}");
    assert_eq!(origin.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_arriving_in_pieces_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for piece in b"GET /pieces HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".chunks(3) {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("answered and closed within 10 s")
        .unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.contains("\r\nconnection: close\r\n"), "{raw}");
    assert!(raw.contains("\"uri\":\"/pieces\""), "{raw}");
    // A head cut off by the client's close gets nothing, and harms nothing.
    let mut cut = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    cut.write_all(b"GET /cut HTTP/1.1\r\nHo").await.unwrap();
    cut.shutdown().await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), cut.read_to_end(&mut raw))
        .await
        .expect("closed within 10 s")
        .unwrap();
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    let raw = raw_exchange(
        &hf.addr(),
        b"GET /after HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_down_gives_502() {
    let closed = free_port();
    let hf = Holdfast::builder()
        .route(format!("* 127.0.0.1:{closed}"))
        .run()
        .await;
    let reply = Client::new().get(&hf.url("/")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.text(), "Error while proxying to origin.\n");
    assert!(
        hf.wait_log("origin 127.0.0.1:", Duration::from_secs(5))
            .await,
        "{}",
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_next_target() {
    let origin = Origin::start().await;
    let closed = free_port();
    let hf = Holdfast::builder()
        .route(format!("* 127.0.0.1:{closed} {}", origin.target()))
        .run()
        .await;
    let reply = Client::new().get(&hf.url("/failover")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["uri"], "/failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_domains_and_paths_and_rewrite() {
    let a = Origin::start().await;
    let b = Origin::start().await;
    let hf = Holdfast::builder()
        .routes_file(format!(
            "# test routes\n\
             * {a}\n\
             api.test,path_beg=/v1/,replace_beg=/internal/ {b},host=backend.test\n\
             *,path_beg=/other {b}\n",
            a = a.target(),
            b = b.target()
        ))
        .run()
        .await;
    let client = Client::new();
    let reply = client
        .send(
            "GET",
            &hf.url("/v1/items?q=1"),
            &[("Host", "api.test")],
            Bytes::new(),
        )
        .await;
    let echo = reply.json();
    assert_eq!(echo["uri"], "/internal/items?q=1");
    assert_eq!(
        echoed_header(&echo, "host").as_deref(),
        Some("backend.test")
    );
    assert_eq!(b.requests(), 1);

    // Same path, another host: the wildcard rules apply.
    let reply = client
        .send(
            "GET",
            &hf.url("/v1/items"),
            &[("Host", "www.test")],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.json()["uri"], "/v1/items");
    assert_eq!(a.requests(), 1);
    let reply = client.get(&hf.url("/other/x")).await;
    assert_eq!(reply.json()["uri"], "/other/x");
    assert_eq!(b.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_head_pass_through() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();
    let reply = client.get(&hf.url("/status/404")).await;
    assert_eq!((reply.status, reply.text().as_str()), (404, "status 404\n"));
    let reply = client.get(&hf.url("/status/503")).await;
    assert_eq!(reply.status, 503);
    let reply = client
        .send("HEAD", &hf.url("/status/200"), &[], Bytes::new())
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_appended_when_configured() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("proxy", "x_forwarded_for", "truncate:0,append")
        .run()
        .await;
    let reply = Client::new()
        .send(
            "GET",
            &hf.url("/"),
            &[("X-Forwarded-For", "6.6.6.6")],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        echoed_header(&reply.json(), "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_origin_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let mut stream = tokio::net::TcpStream::connect(hf.addr()).await.unwrap();
    stream
        .write_all(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("tick") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the first chunk");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream);
    assert!(
        origin.wait_cancelled(1, Duration::from_secs(10)).await,
        "the origin's response was not dropped after the client left\n{}",
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_targets_verify_certificates_unless_insecure() {
    let origin = Origin::start_tls().await;
    let hf = Holdfast::builder()
        .routes_file(format!(
            "*,path_beg=/verified 127.0.0.1:{port},ssl\n*,path_beg=/insecure 127.0.0.1:{port},ssl,insecure\n",
            port = origin.addr.port()
        ))
        .run()
        .await;
    let client = Client::new();
    // A self-signed certificate is refused by default...
    let reply = client.get(&hf.url("/verified")).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        hf.wait_log("certificate", Duration::from_secs(5)).await,
        "{}",
        hf.logs()
    );
    // ...and accepted on an `insecure` target, over TLS.
    let reply = client.get(&hf.url("/insecure/x")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["uri"], "/insecure/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_options_star_are_answered_here_and_never_forwarded() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let wait = Duration::from_secs(10);
    let raw = raw_exchange(
        &hf.addr(),
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        wait,
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(raw.contains("not a tunnel"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("\r\nallow: "), "{raw}");
    let raw = raw_exchange(
        &hf.addr(),
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("\r\nallow: options, get"),
        "{raw}"
    );
    assert_eq!(origin.requests(), 0, "nothing reached the origin");
    // OPTIONS on a resource still goes to the origin.
    let raw = raw_exchange(
        &hf.addr(),
        b"OPTIONS /thing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    assert!(raw.contains("\"method\":\"OPTIONS\""), "{raw}");
    assert!(raw.contains("\"uri\":\"/thing\""), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_route_and_forward_by_their_authority() {
    let a = Origin::start().await;
    let b = Origin::start().await;
    let hf = Holdfast::builder()
        .routes_file(format!(
            "* {a}\nrouted.test {b}\n",
            a = a.target(),
            b = b.target()
        ))
        .run()
        .await;
    let raw = raw_exchange(
        &hf.addr(),
        b"GET http://routed.test/p?q=1 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body = &raw[raw.find("\r\n\r\n").expect("a head") + 4..];
    let echo: serde_json::Value = serde_json::from_str(body).expect("the echo");
    assert_eq!(echo["uri"], "/p?q=1");
    assert_eq!(echoed_header(&echo, "host").as_deref(), Some("routed.test"));
    assert_eq!((a.requests(), b.requests()), (0, 1), "routed by the URI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_list_cannot_remove_host() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let raw = raw_exchange(
        &hf.addr(),
        b"GET /h HTTP/1.1\r\nHost: client.test\r\nConnection: Host, X-Hop, close\r\nX-Hop: 1\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let body = &raw[raw.find("\r\n\r\n").expect("a head") + 4..];
    let echo: serde_json::Value = serde_json::from_str(body).expect("the echo");
    assert_eq!(echoed_header(&echo, "host").as_deref(), Some("client.test"));
    assert_eq!(echoed_header(&echo, "x-hop"), None);
}
