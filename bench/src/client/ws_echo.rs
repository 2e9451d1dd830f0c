//! WebSocket echo: messages per second and round trips through a proxy.
//!
//! `--serve-echo ADDR` runs the origin: a WebSocket server (tungstenite,
//! the same library as the proxies' own) that sends every text or binary
//! message back. `--ws-echo` runs the client: `--connections` WebSockets to
//! `ws://<target><path>`, each sending `--messages` messages of `--size`
//! bytes with at most `--in-flight` unanswered at a time, timing each
//! message from its send to its echo. Reported: echoes per second over
//! all connections, round-trip p50/p99/max, and any message lost,
//! reordered or cut (each carries its number).

use super::Args;
use crate::stats::percentile;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Messages up to 64 MiB either way (the proxy's limit is what counts).
fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(64 << 20))
}

/// Serves echoes on `addr` until the process is stopped.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("echo origin on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await
            else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            while let Some(Ok(message)) = stream.next().await {
                if (message.is_text() || message.is_binary()) && sink.send(message).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// One connection's outcome.
#[derive(Default)]
struct Outcome {
    round_trips_us: Vec<u64>,
    faults: Vec<String>,
}

/// Runs the client and returns its report.
pub async fn run(args: Arc<Args>) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            connection(&args).await.unwrap_or_else(|err| Outcome {
                faults: vec![err.to_string()],
                ..Outcome::default()
            })
        }));
    }
    let mut all = Vec::new();
    let mut faults = Vec::new();
    for task in tasks {
        let outcome = task.await?;
        all.extend(outcome.round_trips_us);
        faults.extend(outcome.faults);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let expected = args.connections * args.messages;
    Ok(serde_json::json!({
        "target": args.target[0].to_string(),
        "connections": args.connections,
        "message_bytes": args.size,
        "in_flight": args.in_flight,
        "echoes": all.len(),
        "expected": expected,
        "lost": expected.saturating_sub(all.len()),
        "faults": faults.iter().take(5).collect::<Vec<_>>(),
        "seconds": secs,
        "echoes_per_sec": all.len() as f64 / secs.max(1e-9),
        "round_trip_p50_ms": percentile(&all, 0.5) as f64 / 1000.0,
        "round_trip_p99_ms": percentile(&all, 0.99) as f64 / 1000.0,
        "round_trip_max_ms": all.last().copied().unwrap_or(0) as f64 / 1000.0,
    }))
}

/// The body of message `n`: its number, padded to `size` bytes.
fn body(n: usize, size: usize) -> Vec<u8> {
    let mut data = format!("{n:010}").into_bytes();
    data.resize(size.max(10), b'.');
    data
}

async fn connection(args: &Args) -> anyhow::Result<Outcome> {
    let stream = TcpStream::connect(args.target[0]).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{}{}", args.target[0], args.path);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config())).await?;
    let (mut sink, mut stream) = ws.split();
    let window = Arc::new(Semaphore::new(args.in_flight.max(1)));
    // Send times, oldest first: echoes come back in order.
    let sent: Arc<std::sync::Mutex<VecDeque<Instant>>> = Arc::default();
    let (messages, size) = (args.messages, args.size);
    let writer = {
        let (window, sent) = (window.clone(), sent.clone());
        tokio::spawn(async move {
            for n in 0..messages {
                let Ok(permit) = window.acquire().await else {
                    return;
                };
                permit.forget();
                if let Ok(mut sent) = sent.lock() {
                    sent.push_back(Instant::now());
                }
                if sink.send(Message::binary(body(n, size))).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut outcome = Outcome::default();
    let deadline = Duration::from_secs(args.timeout);
    for n in 0..messages {
        let message = match tokio::time::timeout(deadline, stream.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(other) => {
                outcome.faults.push(format!("ended at {n}: {other:?}"));
                break;
            }
            Err(_) => {
                outcome.faults.push(format!("no echo of message {n}"));
                break;
            }
        };
        let at = sent.lock().ok().and_then(|mut s| s.pop_front());
        if message.into_data() != body(n, size) {
            outcome.faults.push(format!("echo {n} differs"));
            break;
        }
        if let Some(at) = at {
            outcome.round_trips_us.push(at.elapsed().as_micros() as u64);
        }
        window.add_permits(1);
    }
    writer.abort();
    Ok(outcome)
}
