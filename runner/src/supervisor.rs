//! Runs every service and keeps it running: a child that crashes is started
//! again after a back-off (reset once it has run for a while); one that
//! fails before it was ever ready stops everything, since that is a
//! configuration problem a restart cannot fix. SIGTERM/SIGINT stop the
//! children (SIGTERM, then SIGKILL after a grace period); SIGHUP is passed to
//! the proxy, which reloads its routes.

use crate::logs::LogSink;
use crate::service::{Event, Service};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First restart delay; doubles per quick failure up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A child that ran this long before failing restarts without delay growth.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How much longer than their own drain (`shutdown_grace`) children get to
/// exit after SIGTERM before SIGKILL.
pub const STOP_MARGIN: Duration = Duration::from_secs(3);

/// A service's live state, shared with its supervising task.
struct Slot {
    service: Service,
    pid: AtomicU32,
    ready: AtomicBool,
    ever_ready: AtomicBool,
}

/// Runs `services` until `token` is cancelled or one fails at start-up.
/// `ready_line` is logged once every service reported ready.
pub async fn supervise(
    services: Vec<Service>,
    sink: LogSink,
    token: CancellationToken,
    mut reloads: mpsc::Receiver<()>,
    ready_line: String,
) -> Result<(), String> {
    // Unbounded is safe here: each child start produces at most one event.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (fail_tx, mut failures) = mpsc::channel::<String>(services.len().max(1));
    let slots: Vec<Arc<Slot>> = services
        .into_iter()
        .map(|service| {
            Arc::new(Slot {
                service,
                pid: AtomicU32::new(0),
                ready: AtomicBool::new(false),
                ever_ready: AtomicBool::new(false),
            })
        })
        .collect();
    let mut tasks = Vec::new();
    for slot in &slots {
        tasks.push(tokio::spawn(run_service(
            slot.clone(),
            sink.clone(),
            events_tx.clone(),
            token.clone(),
            fail_tx.clone(),
        )));
    }
    drop(fail_tx);
    let mut announced = false;
    let mut result = Ok(());
    loop {
        tokio::select! {
            Some((name, Event::Ready)) = events.recv() => {
                if let Some(slot) = slots.iter().find(|s| s.service.name == name) {
                    let again = slot.ever_ready.swap(true, Ordering::SeqCst);
                    slot.ready.store(true, Ordering::SeqCst);
                    if again {
                        tracing::info!("{name} restarted and ready");
                    }
                }
                if !announced && slots.iter().all(|s| s.ready.load(Ordering::SeqCst)) {
                    announced = true;
                    tracing::info!(target: holdfast_runtime::LIFECYCLE, phase = "ready", "{ready_line}");
                }
            }
            Some(()) = reloads.recv() => {
                tracing::info!("SIGHUP: asking the proxies to reload routes");
                for proxy in slots.iter().filter(|s| s.service.name.starts_with("proxy")) {
                    signal(&proxy.pid, Signal::SIGHUP);
                }
            }
            Some(reason) = failures.recv() => {
                tracing::error!("{reason}; stopping");
                result = Err(reason);
                token.cancel();
                break;
            }
            _ = token.cancelled() => break,
        }
    }
    tracing::info!(target: holdfast_runtime::LIFECYCLE, phase = "stopping", "stopping services");
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!(target: holdfast_runtime::LIFECYCLE, phase = "stopped", "all services stopped");
    result
}

fn signal(pid: &AtomicU32, signal: Signal) {
    let pid = pid.load(Ordering::SeqCst);
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

async fn run_service(
    slot: Arc<Slot>,
    sink: LogSink,
    events: mpsc::UnboundedSender<(Arc<str>, Event)>,
    token: CancellationToken,
    failures: mpsc::Sender<String>,
) {
    let name = slot.service.name.clone();
    let mut backoff = BACKOFF_START;
    loop {
        let mut child = match slot.service.spawn(&sink, events.clone()) {
            Ok(child) => child,
            Err(err) => {
                let _ = failures
                    .send(format!(
                        "cannot start {name} ({}): {err}",
                        slot.service.program.display()
                    ))
                    .await;
                return;
            }
        };
        slot.pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
        tracing::debug!(pid = child.id(), "{name} started");
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                slot.ready.store(false, Ordering::SeqCst);
                slot.pid.store(0, Ordering::SeqCst);
                if token.is_cancelled() {
                    return;
                }
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                if !slot.ever_ready.load(Ordering::SeqCst) {
                    let _ = failures.send(format!("{name} exited during start-up ({status})")).await;
                    return;
                }
                if started.elapsed() >= STABLE_AFTER {
                    backoff = BACKOFF_START;
                }
                tracing::warn!("{name} exited ({status}); restarting in {} ms", backoff.as_millis());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = token.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            _ = token.cancelled() => {
                stop(&mut child, &name, slot.service.stop_grace).await;
                slot.pid.store(0, Ordering::SeqCst);
                return;
            }
        }
    }
}

async fn stop(child: &mut Child, name: &str, grace: Duration) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(_) => tracing::debug!("{name} stopped"),
        Err(_) => {
            tracing::warn!(
                "{name} did not stop within {}s; killing it",
                grace.as_secs()
            );
            let _ = child.kill().await;
        }
    }
}
