//! `holdfast-bench`: drives any GRIP proxy (Holdfast, Pushpin) the same way
//! and reports JSON.
//!
//! It opens N stream connections to a URL whose origin answers with a
//! `Grip-Hold: stream` on one channel, waits until every one has its initial
//! response, then publishes M items over HTTP one after another; each item is
//! `m<k>\n`, and each connection notes when it sees it. Reported: connect
//! rate, publish→delivery latency to the first and to the last subscriber
//! (p50/p99/max over the items), deliveries per second, the memory (RSS)
//! of the given processes and their children before and after connecting,
//! and the CPU time each of them (and this process) spent per delivery
//! while the items went out.
//!
//! With `--rate`, items go out at that rate without waiting for their
//! deliveries (a storm; with `--purge`, each names a cache key to purge,
//! so Holdfast paces them), and what each connection received is reported:
//! how many items, and whether and when the last one arrived.
//!
//! `--ws-echo` and `--serve-echo` measure WebSocket echo through a proxy
//! instead (see [`ws_echo`]).

mod ws_echo;

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "holdfast-bench",
    about = "Hold stream connections on a GRIP proxy, publish, measure"
)]
struct Args {
    /// Proxy address (`host:port`); several, comma-separated, for several
    /// instances on one bus: connections go to them in turn.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7999")]
    target: Vec<SocketAddr>,
    /// Path whose origin answers `Grip-Hold: stream` on `--channel`.
    #[arg(long, default_value = "/stream")]
    path: String,
    /// Connections to hold.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Items to publish.
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// Channel the origin subscribes connections to.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Publish API base (`http://127.0.0.1:5561`); several, comma-separated:
    /// item k goes through the (k mod n)-th.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:5561")]
    publish: Vec<String>,
    /// Local addresses to connect from, round robin (spreads ports over
    /// several 127.0.0.x for very many connections).
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// Processes whose RSS (with their children) is reported.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Concurrent connection attempts.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds to wait for every delivery of one item.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Hold WebSocket connections (to a GRIP WebSocket origin that
    /// subscribes them to the channel) and publish `ws-message` items,
    /// instead of HTTP streams and `http-stream` items.
    #[arg(long)]
    websocket: bool,
    /// Milliseconds between the end of one item's deliveries and the next
    /// publish (0: at once).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Publish this many items per second (fractions allowed) without
    /// waiting for deliveries (a storm, or a soak when slow and long); 0:
    /// one after another, each once delivered.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Only hold connections and count the items they receive (another
    /// process publishes): for spreading very many connections over
    /// several client processes. Prints `ready` on stderr once connected,
    /// reports when every connection has the last of `--messages` items.
    #[arg(long)]
    listen_only: bool,
    /// While publishing a storm, sample the RSS of `--pids` this often.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// RSS growth is measured from the first sample after this many
    /// seconds of publishing (warm-up).
    #[arg(long, default_value_t = 60)]
    warmup_secs: u64,
    /// Items name `purge: [<channel>]` (Holdfast's purge + publish).
    #[arg(long)]
    purge: bool,
    /// WebSocket echo client: `--connections` WebSockets to `--path`, each
    /// sending `--messages` messages of `--size` bytes, `--in-flight` at a
    /// time; reports echoes per second and round trips.
    #[arg(long)]
    ws_echo: bool,
    /// Run the WebSocket echo origin on this address, until stopped.
    #[arg(long)]
    serve_echo: Option<SocketAddr>,
    /// Publish to this ZeroMQ address instead (an XPUB connected to a
    /// broker's input, such as `holdfast broker --in`): `[channel, J+item]`.
    #[arg(long)]
    publish_zmq: Option<String>,
    /// With `--publish-zmq`: subscriptions to the channel to wait for before
    /// publishing (one per instance behind the broker).
    #[arg(long, default_value_t = 1)]
    zmq_subscribers: usize,
    /// Seconds to let the proxy settle before measuring RSS again: once
    /// every connection is held (memory per held connection, settled), and
    /// after the last item, once every connection is closed (memory given
    /// back).
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Print the RSS KiB of `--pids` and their children per program name
    /// as JSON, and exit (for scripts that drive several client processes).
    #[arg(long)]
    rss_only: bool,
    /// Bytes per echo message.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Echo messages sent and not yet answered, per connection.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
}

/// What every connection task shares.
struct Shared {
    /// When item k was published.
    published: Mutex<Vec<Option<Instant>>>,
    /// Latency (µs) per item per connection.
    latencies: Mutex<Vec<Vec<u64>>>,
    /// Connections that got their initial response.
    ready: AtomicUsize,
    /// Deliveries counted per item.
    delivered: Vec<AtomicUsize>,
    /// Storms: per connection, items received and when the last one came.
    storm: Mutex<Vec<(usize, Option<Instant>)>>,
    /// Storms: per item, deliveries and the first and last arrival in
    /// microseconds of wall-clock time, so reports of several processes on
    /// one machine can be merged against the publisher's times.
    arrivals: Mutex<Vec<Arrivals>>,
    notify: Notify,
}

/// One item's deliveries seen by this process.
#[derive(Debug, Clone, Copy, Default)]
struct Arrivals {
    count: usize,
    first_us: u64,
    last_us: u64,
}

/// Microseconds since the Unix epoch (comparable between processes).
fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat =
                    std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !all.contains(&child) {
                    all.push(child);
                }
            }
        }
        i += 1;
    }
    all
}

fn total_rss(pids: &[u32]) -> u64 {
    pids.iter().flat_map(|p| tree(*p)).map(rss_kb).sum()
}

/// `measure` of `pids` and their children, summed per process name
/// (`holdfast-connmgr`, `holdfast-handler`, `condure`, ...).
fn by_process(
    pids: &[u32],
    measure: impl Fn(u32) -> u64,
) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    for pid in pids.iter().flat_map(|p| tree(*p)) {
        // argv[0]'s file name: `comm` is cut at 15 bytes.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        let name = argv0.rsplit('/').next().unwrap_or_default().to_string();
        *by_name.entry(name).or_insert(0) += measure(pid);
    }
    by_name
}

/// RSS KiB per process name: where the memory is.
fn rss_by_process(pids: &[u32]) -> std::collections::BTreeMap<String, u64> {
    by_process(pids, rss_kb)
}

/// CPU time (user + system, clock ticks) per process name.
fn cpu_ticks_by_process(pids: &[u32]) -> std::collections::BTreeMap<String, u64> {
    by_process(pids, |pid| cpu_ticks(&pid.to_string()))
}

/// utime + stime of a process (`self` for this one), in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: state is the 3rd field, utime the
    // 14th, stime the 15th.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let mut fields = rest.split_whitespace().skip(11);
    let mut tick = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick() + tick()
}

/// Per process name (and this benchmark's own process, `holdfast-bench`),
/// microseconds of CPU per delivery between two samples: where a
/// delivery's work is done.
fn cpu_per_delivery(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    deliveries: usize,
) -> serde_json::Value {
    // Linux reports these in USER_HZ, 100 per second on every architecture.
    const TICK_US: f64 = 10_000.0;
    let mut out = serde_json::Map::new();
    for (name, ticks) in after {
        let spent = ticks.saturating_sub(before.get(name).copied().unwrap_or(0));
        let per = spent as f64 * TICK_US / deliveries.max(1) as f64;
        out.insert(
            name.clone(),
            serde_json::json!((per * 100.0).round() / 100.0),
        );
    }
    serde_json::Value::Object(out)
}

/// Per process name, KiB per connection between two samples.
fn per_connection(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    connections: usize,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, kb) in after {
        let grown = kb.saturating_sub(before.get(name).copied().unwrap_or(0));
        let per = grown as f64 / connections.max(1) as f64;
        out.insert(name.clone(), serde_json::json!((per * 10.0).round() / 10.0));
    }
    serde_json::Value::Object(out)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(mut values: Vec<u64>) -> serde_json::Value {
    values.sort_unstable();
    serde_json::json!({
        "p50_ms": percentile(&values, 0.5) as f64 / 1000.0,
        "p99_ms": percentile(&values, 0.99) as f64 / 1000.0,
        "max_ms": values.last().copied().unwrap_or(0) as f64 / 1000.0,
    })
}

async fn connection(
    args: Arc<Args>,
    shared: Arc<Shared>,
    source: Option<IpAddr>,
    permit: tokio::sync::OwnedSemaphorePermit,
    index: usize,
) -> anyhow::Result<()> {
    let mut permit = Some(permit);
    let target = args.target[index % args.target.len()];
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream = socket.connect(target).await?;
    let request = if args.websocket {
        format!(
            "GET {} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            args.path
        )
    } else {
        format!("GET {} HTTP/1.1\r\nHost: bench\r\n\r\n", args.path)
    };
    let expected = if args.websocket {
        "HTTP/1.1 101"
    } else {
        "HTTP/1.1 200"
    };
    stream.write_all(request.as_bytes()).await?;
    // Small: 10,000 connections' buffers should not crowd the proxy out of
    // the CPU caches it shares with this process.
    let mut buf = [0u8; 512];
    // Bytes not yet consumed: the head until it is complete, then at most
    // a partial marker line.
    let mut seen: Vec<u8> = Vec::new();
    let mut head_done = false;
    let mut next = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            anyhow::bail!("connection closed by the proxy");
        }
        seen.extend_from_slice(&buf[..n]);
        if !head_done {
            if let Some(end) = find(&seen, b"\r\n\r\n") {
                if !seen.starts_with(expected.as_bytes()) {
                    let line = String::from_utf8_lossy(&seen);
                    anyhow::bail!("unexpected answer: {}", line.lines().next().unwrap_or(""));
                }
                head_done = true;
                // Connecting is done: let the next connection start.
                permit.take();
                seen.drain(..end + 4);
                shared.ready.fetch_add(1, Ordering::SeqCst);
                shared.notify.notify_waiters();
            }
            continue;
        }
        if args.rate > 0.0 || args.listen_only {
            // A storm: count markers, note the last item's arrival.
            let mut received = 0;
            let mut last_at = None;
            for k in take_markers(&mut seen) {
                received += 1;
                if let Ok(mut arrivals) = shared.arrivals.lock() {
                    if let Some(item) = arrivals.get_mut(k) {
                        let now = wall_us();
                        if item.count == 0 {
                            item.first_us = now;
                        }
                        item.count += 1;
                        item.last_us = now;
                    }
                }
                if k + 1 == args.messages {
                    last_at = Some(Instant::now());
                }
            }
            if received > 0 {
                if let Ok(mut storm) = shared.storm.lock() {
                    let entry = &mut storm[index];
                    entry.0 += received;
                    entry.1 = entry.1.or(last_at);
                }
                shared.notify.notify_waiters();
            }
            continue;
        }
        // Items arrive in order; note each marker as it appears.
        for k in take_markers(&mut seen) {
            if k != next || next >= args.messages {
                continue;
            }
            let now = Instant::now();
            let published = shared.published.lock().map(|p| p[next]).unwrap_or(None);
            if let (Some(published), Ok(mut latencies)) = (published, shared.latencies.lock()) {
                latencies[next].push(now.duration_since(published).as_micros() as u64);
            }
            // Wake the publisher only when this item reached everyone.
            let delivered = shared.delivered[next].fetch_add(1, Ordering::SeqCst) + 1;
            if delivered >= shared.ready.load(Ordering::SeqCst) {
                shared.notify.notify_waiters();
            }
            next += 1;
        }
        if next == args.messages {
            // Stay connected until the run ends: closing now would load the
            // proxy while other subscribers still wait for this item.
            std::future::pending::<()>().await;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Takes the complete lines out of `seen` and returns the item numbers of
/// those that are markers (`m<k>`, whatever framing surrounds them: chunk
/// sizes, SSE fields, WebSocket frame headers); a partial last line stays
/// (its last 64 bytes, enough for any marker, if it grows long).
fn take_markers(seen: &mut Vec<u8>) -> Vec<usize> {
    let Some(last_newline) = seen.iter().rposition(|&b| b == b'\n') else {
        if seen.len() > 1024 {
            seen.drain(..seen.len() - 64);
        }
        return Vec::new();
    };
    let markers = seen[..=last_newline]
        .split(|&b| b == b'\n')
        .filter_map(marker)
        .collect();
    seen.drain(..=last_newline);
    markers
}

/// `k` if `line` ends with `m<k>` (a trailing `\r` aside).
fn marker(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || line.len() <= digits || line[line.len() - digits - 1] != b'm' {
        return None;
    }
    std::str::from_utf8(&line[line.len() - digits..])
        .ok()?
        .parse()
        .ok()
}

/// Publishes `--messages` items at `--rate` per second, then waits for the
/// last one to reach every connection.
async fn storm(
    args: &Args,
    shared: &Shared,
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>,
    publish_uris: &[String],
    ready: usize,
) -> anyhow::Result<serde_json::Value> {
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    let mut last_published = started;
    let mut published_at_us = Vec::with_capacity(args.messages);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_rss(
        args.pids.clone(),
        Duration::from_secs(args.sample_secs.max(1)),
        samples.clone(),
    ));
    for k in 0..args.messages {
        tokio::time::sleep_until(started + period * k as u32).await;
        let mut item = serde_json::json!({"channel": args.channel,
            "formats": {"http-stream": {"content": format!("m{k}\n")}}});
        if args.purge {
            item["purge"] = serde_json::json!([args.channel]);
        }
        let body = serde_json::json!({"items": [item]});
        let req = http::Request::post(&publish_uris[k % publish_uris.len()])
            .header("Content-Type", "application/json")
            .body(Full::new(bytes::Bytes::from(body.to_string())))?;
        last_published = Instant::now();
        published_at_us.push(wall_us());
        let resp = client.request(req).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        anyhow::ensure!(status.is_success(), "publish answered {status}");
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let got_last =
        |storm: &[(usize, Option<Instant>)]| storm.iter().filter(|(_, at)| at.is_some()).count();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    wait_until(shared, deadline, || {
        shared
            .storm
            .lock()
            .map(|s| got_last(&s) >= ready)
            .unwrap_or(false)
    })
    .await;
    // Let stragglers count, then total per connection.
    let storm = shared.storm.lock().map(|s| s.clone()).unwrap_or_default();
    let last_delays: Vec<u64> = storm
        .iter()
        .filter_map(|(_, at)| at.map(|at| at.duration_since(last_published).as_micros() as u64))
        .collect();
    sampler.abort();
    let total: usize = storm.iter().map(|(n, _)| n).sum();
    let (lost, short) = losses(&storm, ready, args.messages);
    let rss: Vec<(f64, u64)> = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let warm = rss
        .iter()
        .find(|(t, _)| *t >= args.warmup_secs as f64)
        .map(|(_, kb)| *kb);
    let growth = match (warm, rss.last()) {
        (Some(warm), Some((_, end))) if warm > 0 => {
            Some((*end as f64 - warm as f64) * 100.0 / warm as f64)
        }
        _ => None,
    };
    Ok(serde_json::json!({
        "connections": args.connections,
        "connected": ready,
        "lost_deliveries": lost,
        "connections_missing_items": short,
        "rss_kb_samples": rss.iter().map(|(t, kb)| serde_json::json!([t, kb])).collect::<Vec<_>>(),
        "rss_growth_after_warmup_pct": growth,
        "published": args.messages,
        "publish_rate_per_sec": args.messages as f64 / publish_secs.max(1e-9),
        "purge": args.purge,
        "items_received_per_connection": total as f64 / ready.max(1) as f64,
        "last_item_received_by": got_last(&storm),
        "last_item_after_last_publish": summary(last_delays),
        "published_at_us": published_at_us,
        "arrivals": arrivals_json(shared),
    }))
}

/// Per item: `[deliveries, first arrival µs, last arrival µs]`.
fn arrivals_json(shared: &Shared) -> serde_json::Value {
    let arrivals = shared
        .arrivals
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    arrivals
        .iter()
        .map(|a| serde_json::json!([a.count, a.first_us, a.last_us]))
        .collect()
}

/// Deliveries missing (`messages` for every connected connection, minus
/// what arrived) and how many connections miss any. Connections that never
/// connected are not counted: they show in `connected`.
fn losses(storm: &[(usize, Option<Instant>)], ready: usize, messages: usize) -> (usize, usize) {
    let mut counts: Vec<usize> = storm.iter().map(|(n, _)| *n).collect();
    // The connected ones are those that received anything or are within
    // `ready`; the best `ready` counts stand for them.
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts.truncate(ready);
    let lost = counts.iter().map(|n| messages.saturating_sub(*n)).sum();
    let short = counts.iter().filter(|n| **n < messages).count();
    (lost, short)
}

/// Appends `(seconds since start, total RSS KiB of pids)` to `samples`
/// every `every`, until aborted.
async fn sample_rss(pids: Vec<u32>, every: Duration, samples: Arc<Mutex<Vec<(f64, u64)>>>) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let kb = total_rss(&pids);
        if let Ok(mut s) = samples.lock() {
            s.push((started.elapsed().as_secs_f64().round(), kb));
        }
    }
}

/// An XPUB connected to `addr`, handed over once `subscribers`
/// subscriptions to `channel` came through it (the broker passes each
/// instance's on).
fn zmq_publisher(
    addr: &str,
    channel: &str,
    subscribers: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<zmq::Socket>>> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::XPUB)?;
    socket.set_xpub_verbose(true)?;
    socket.set_rcvtimeo(60_000)?;
    socket.connect(addr)?;
    let wanted = [&[1u8][..], channel.as_bytes()].concat();
    Ok(tokio::task::spawn_blocking(move || {
        let mut seen = 0;
        while seen < subscribers {
            let message = socket.recv_bytes(0).map_err(|e| {
                anyhow::anyhow!("{seen} of {subscribers} subscriptions within 60 s: {e}")
            })?;
            if message == wanted {
                seen += 1;
            }
        }
        Ok(socket)
    }))
}

async fn wait_until(shared: &Shared, deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        let notified = shared.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return done();
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if args.rss_only {
        println!("{}", serde_json::to_string(&rss_by_process(&args.pids))?);
        return Ok(());
    }
    if let Some(addr) = args.serve_echo {
        return ws_echo::serve(addr).await;
    }
    if args.ws_echo {
        let report = ws_echo::run(args.clone()).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let shared = Arc::new(Shared {
        published: Mutex::new(vec![None; args.messages]),
        latencies: Mutex::new(vec![Vec::new(); args.messages]),
        ready: AtomicUsize::new(0),
        delivered: (0..args.messages).map(|_| AtomicUsize::new(0)).collect(),
        storm: Mutex::new(vec![(0, None); args.connections]),
        arrivals: Mutex::new(vec![Arrivals::default(); args.messages]),
        notify: Notify::new(),
    });
    // Connected before the streams are held, so it sees every instance's
    // subscription pass through the broker.
    let zmq_subscribed = match &args.publish_zmq {
        Some(addr) => Some(zmq_publisher(addr, &args.channel, args.zmq_subscribers)?),
        None => None,
    };
    let rss_before = total_rss(&args.pids);
    let by_process_before = rss_by_process(&args.pids);
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let source = (!args.sources.is_empty()).then(|| args.sources[i % args.sources.len()]);
        let (args, shared, limit, failures) = (
            args.clone(),
            shared.clone(),
            limit.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // The permit covers connecting and the initial response only.
            let Ok(permit) = limit.acquire_owned().await else {
                return;
            };
            if let Err(err) = connection(args, shared.clone(), source, permit, i).await {
                if failures.fetch_add(1, Ordering::SeqCst) < 5 {
                    eprintln!("connection {i}: {err}");
                }
                shared.notify.notify_waiters();
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout.max(60));
    let all_ready = wait_until(&shared, deadline, || {
        shared.ready.load(Ordering::SeqCst) + failures.load(Ordering::SeqCst) >= args.connections
    })
    .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let ready = shared.ready.load(Ordering::SeqCst);
    let rss_after = total_rss(&args.pids);
    // What the connections cost once held, when what setting them up took
    // has had `--settle-secs` to go back.
    if !args.listen_only && args.rate == 0.0 {
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    }
    let rss_settled = total_rss(&args.pids);
    let by_process_held = rss_by_process(&args.pids);

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let publish_uris: Vec<String> = args
        .publish
        .iter()
        .map(|base| format!("{}/publish/", base.trim_end_matches('/')))
        .collect();
    if args.listen_only {
        eprintln!("ready {ready}");
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        wait_until(&shared, deadline, || {
            shared
                .storm
                .lock()
                .map(|s| s.iter().filter(|(_, at)| at.is_some()).count() >= ready)
                .unwrap_or(false)
        })
        .await;
        let storm = shared.storm.lock().map(|s| s.clone()).unwrap_or_default();
        let (lost, short) = losses(&storm, ready, args.messages);
        let report = serde_json::json!({
            "connections": args.connections,
            "connected": ready,
            "failed": failures.load(Ordering::SeqCst),
            "expected_per_connection": args.messages,
            "lost_deliveries": lost,
            "connections_missing_items": short,
            "connect_secs": connect_secs,
            "arrivals": arrivals_json(&shared),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        for task in tasks {
            task.abort();
        }
        return Ok(());
    }
    if args.rate > 0.0 {
        let report = storm(&args, &shared, &client, &publish_uris, ready).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        for task in tasks {
            task.abort();
        }
        return Ok(());
    }
    let zmq_publisher = match zmq_subscribed {
        Some(subscribed) => Some(subscribed.await??),
        None => None,
    };
    let publishing = Instant::now();
    let mut cpu_before = cpu_ticks_by_process(&args.pids);
    cpu_before.insert("holdfast-bench".into(), cpu_ticks("self"));
    let mut complete = 0;
    for k in 0..args.messages {
        if k > 0 && args.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        // Markers are found in the raw bytes, so WebSocket frame headers
        // around them do not matter.
        let format = if args.websocket {
            "ws-message"
        } else {
            "http-stream"
        };
        let body = serde_json::json!({"items": [{"channel": args.channel, "formats": {format: {"content": format!("m{k}\n")}}}]});
        if let Ok(mut published) = shared.published.lock() {
            published[k] = Some(Instant::now());
        }
        if let Some(socket) = &zmq_publisher {
            let item = &body["items"][0];
            socket.send(args.channel.as_bytes(), zmq::SNDMORE)?;
            socket.send(format!("J{item}").as_bytes(), 0)?;
        } else {
            let req = http::Request::post(&publish_uris[k % publish_uris.len()])
                .header("Content-Type", "application/json")
                .body(Full::new(bytes::Bytes::from(body.to_string())))?;
            let resp = client.request(req).await?;
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            anyhow::ensure!(status.is_success(), "publish answered {status}");
        }
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        if wait_until(&shared, deadline, || {
            shared.delivered[k].load(Ordering::SeqCst) >= ready
        })
        .await
        {
            complete += 1;
        }
    }
    let publish_secs = publishing.elapsed().as_secs_f64();
    let latencies = shared
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let first: Vec<u64> = latencies
        .iter()
        .filter_map(|l| l.iter().min().copied())
        .collect();
    let last: Vec<u64> = latencies
        .iter()
        .filter_map(|l| l.iter().max().copied())
        .collect();
    let deliveries: usize = latencies.iter().map(Vec::len).sum();
    let mut cpu_after = cpu_ticks_by_process(&args.pids);
    cpu_after.insert("holdfast-bench".into(), cpu_ticks("self"));
    // Memory given back: every client leaves, then the proxy has
    // `--settle-secs` to let go of what they held.
    let rss_published = total_rss(&args.pids);
    for task in &tasks {
        task.abort();
    }
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let rss_closed = total_rss(&args.pids);
    let report = serde_json::json!({
        "target": args.target.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "publish": args.publish,
        "connections": args.connections,
        "connected": ready,
        "failed": failures.load(Ordering::SeqCst),
        "all_connected": all_ready,
        "connect_secs": connect_secs,
        "connect_rate_per_sec": ready as f64 / connect_secs.max(1e-9),
        "rss_kb_before": rss_before,
        "rss_kb_after": rss_after,
        "rss_kb_per_connection": if ready > 0 { (rss_after.saturating_sub(rss_before)) as f64 / ready as f64 } else { 0.0 },
        "rss_kb_settled": rss_settled,
        "rss_kb_per_connection_settled": if ready > 0 { (rss_settled.saturating_sub(rss_before)) as f64 / ready as f64 } else { 0.0 },
        "rss_kb_per_connection_by_process": per_connection(&by_process_before, &by_process_held, ready),
        "rss_kb_by_process_before": by_process_before,
        "rss_kb_by_process_held": by_process_held,
        "rss_kb_after_publishing": rss_published,
        "rss_kb_after_close": rss_closed,
        "rss_returned_after_close_pct": if rss_published > rss_before {
            (rss_published.saturating_sub(rss_closed)) as f64 * 100.0 / (rss_published - rss_before) as f64
        } else { 0.0 },
        "messages": args.messages,
        "messages_fully_delivered": complete,
        "deliveries": deliveries,
        "deliveries_per_sec": deliveries as f64 / publish_secs.max(1e-9),
        "cpu_us_per_delivery_by_process": cpu_per_delivery(&cpu_before, &cpu_after, deliveries),
        "latency_first_subscriber": summary(first.clone()),
        "latency_last_subscriber_each_ms": last.iter().map(|us| *us as f64 / 1000.0).collect::<Vec<_>>(),
        "latency_p99_each_ms": latencies.iter().map(|l| { let mut l = l.clone(); l.sort_unstable(); percentile(&l, 0.99) as f64 / 1000.0 }).collect::<Vec<_>>(),
        "latency_first_each_ms": first.iter().map(|us| *us as f64 / 1000.0).collect::<Vec<_>>(),
        "latency_last_subscriber": summary(last),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_whatever_frames_them() {
        // HTTP chunks, a WebSocket text frame header, a partial line.
        let mut seen = b"3\r\nm0\n\r\n4\r\nm12\n\r\n\x81\x03m7\nm1".to_vec();
        assert_eq!(take_markers(&mut seen), vec![0, 12, 7]);
        assert_eq!(seen, b"m1");
        seen.extend_from_slice(b"3\n");
        assert_eq!(take_markers(&mut seen), vec![13]);
        assert!(seen.is_empty());
    }

    #[test]
    fn lines_that_are_not_markers_are_skipped() {
        for line in [&b""[..], b"m", b"12", b"mx1", b"stream open", b"m1x"] {
            assert_eq!(marker(line), None, "{:?}", String::from_utf8_lossy(line));
        }
        assert_eq!(marker(b"m99999999999999999999999"), None);
        let mut seen = b"no newline yet".to_vec();
        assert!(take_markers(&mut seen).is_empty());
        assert_eq!(seen, b"no newline yet");
        // Content without newlines does not pile up.
        let mut seen = vec![b'x'; 5000];
        seen.extend_from_slice(b"m42");
        assert!(take_markers(&mut seen).is_empty());
        assert_eq!(seen.len(), 64);
        seen.push(b'\n');
        assert_eq!(take_markers(&mut seen), vec![42]);
    }
}
