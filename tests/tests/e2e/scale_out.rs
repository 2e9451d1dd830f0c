//! Scale-out on ZeroMQ: `holdfast broker` between a publisher and three
//! Holdfast instances whose handlers connect their SUB input to it; 3,000
//! held streams spread over the instances each get a publish exactly once.

use holdfast_tests::harness::binaries::bin_dir;
use holdfast_tests::{free_port, Holdfast, Origin};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);
const PER_INSTANCE: usize = 1000;

/// A held stream on raw TCP (thousands of them stay cheap).
async fn hold(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /grip HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, b"initial\n").await;
    stream
}

/// Reads `stream` into `seen` until `needle` is in it.
pub(crate) async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        while !seen.windows(needle.len()).any(|w| w == needle) {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "stream ended: {}", String::from_utf8_lossy(seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no {:?} in {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(seen)
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publish_reaches_every_instance_once_through_the_broker() {
    let (input, output) = (free_port(), free_port());
    let mut broker = tokio::process::Command::new(bin_dir().join("holdfast"))
        .args(["broker", "--in", &format!("tcp://127.0.0.1:{input}")])
        .args(["--out", &format!("tcp://127.0.0.1:{output}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("broker started");
    let origin = Origin::start().await;
    let mut instances = Vec::new();
    for _ in 0..3 {
        let hf = Holdfast::in_front_of(&origin)
            .set(
                "handler",
                "push_in_sub_specs",
                format!("tcp://127.0.0.1:{output}"),
            )
            .set("handler", "push_in_sub_connect", "true")
            .run()
            .await;
        instances.push(hf);
    }
    // The publisher: an XPUB connected to the broker's input sees every
    // instance's subscription (the broker is verbose), so it knows when all
    // three listen.
    let ctx = zmq::Context::new();
    let publisher = ctx.socket(zmq::XPUB).unwrap();
    publisher.set_xpub_verbose(true).unwrap();
    publisher
        .connect(&format!("tcp://127.0.0.1:{input}"))
        .unwrap();

    let mut streams = Vec::new();
    for hf in &instances {
        let addr = hf.addr();
        let mut tasks = Vec::new();
        for _ in 0..PER_INSTANCE {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move { hold(&addr).await }));
        }
        for task in tasks {
            streams.push(task.await.unwrap());
        }
    }
    let subscribed = tokio::task::spawn_blocking(move || {
        let mut seen = 0;
        publisher.set_rcvtimeo(30_000).unwrap();
        while seen < 3 {
            let msg = publisher.recv_bytes(0).expect("a subscription");
            if msg == b"\x01test" {
                seen += 1;
            }
        }
        publisher
    })
    .await
    .unwrap();
    let item = |content: &str| {
        format!(
            "J{}",
            serde_json::json!({"formats": {"http-stream": {"content": content}}})
        )
    };
    for content in ["once\n", "end\n"] {
        subscribed.send("test", zmq::SNDMORE).unwrap();
        subscribed.send(item(content).as_bytes(), 0).unwrap();
    }
    let mut checks = Vec::new();
    for mut stream in streams {
        checks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            read_until(&mut stream, &mut seen, b"end\n").await;
            let text = String::from_utf8_lossy(&seen).into_owned();
            text.matches("once\n").count()
        }));
    }
    let mut received = 0;
    for check in checks {
        assert_eq!(check.await.unwrap(), 1, "exactly once per subscriber");
        received += 1;
    }
    assert_eq!(received, 3 * PER_INSTANCE);
    let _ = broker.start_kill();
}

/// The value of `name{process="<process>",...}` in a metrics text, if any.
fn metric(text: &str, name: &str, process: &str) -> Option<f64> {
    let prefix = format!("{name}{{process=\"{process}\"");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .reduce(|a, b| a + b)
}

/// `connmgr_count=2`, `proxy_count=2`: both connection managers accept
/// connections on the one port, both proxies take requests, and a publish
/// reaches held streams whichever connmgr holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connmgrs_and_two_proxies_share_the_work() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin)
        .set("runner", "connmgr_count", "2")
        .set("runner", "proxy_count", "2")
        .run()
        .await;
    let names: Vec<String> = hf.children().into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        names.iter().filter(|n| *n == "holdfast-connmgr").count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "holdfast-proxy").count(),
        2,
        "{names:?}"
    );
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(hold(&hf.addr()).await);
    }
    let client = holdfast_tests::Client::new();
    for _ in 0..50 {
        assert_eq!(client.get(&hf.url("/")).await.status, 200);
    }
    let item = serde_json::json!({"items": [{"channel": "test",
        "formats": {"http-stream": {"content": "to all\n"}}}]});
    assert_eq!(hf.publish(&item.to_string()).await.0, 200);
    for stream in &mut streams {
        let mut seen = Vec::new();
        read_until(stream, &mut seen, b"to all\n").await;
    }
    // Every process reports each second: both connmgrs hold streams, both
    // proxies answered requests.
    let shared = tokio::time::timeout(WAIT, async {
        loop {
            let text = client.get(&hf.publish_url("/metrics")).await.text();
            let open = |p| metric(&text, "holdfast_connections_open", p).unwrap_or(0.0);
            let requests = |p| metric(&text, "holdfast_proxy_requests_total", p).unwrap_or(0.0);
            if open("connmgr") > 0.0
                && open("connmgr-2") > 0.0
                && requests("proxy") > 0.0
                && requests("proxy-2") > 0.0
                && open("connmgr") + open("connmgr-2") >= 200.0
            {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(shared.is_ok(), "{}", hf.logs());
}
