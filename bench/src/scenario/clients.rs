//! The load: this program's own load generator as child processes (their
//! JSON report on stdout, their `ready` line and errors on stderr), and
//! wrk for plain requests.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// A load generator child.
pub struct Client {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
}

impl Client {
    /// Starts `holdfast-bench <args>` (the flat load-generator flags).
    pub fn spawn(args: &[String]) -> anyhow::Result<Client> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(Notify::new());
        if let Some(err) = child.stderr.take() {
            let (lines, notify) = (stderr.clone(), notify.clone());
            tokio::spawn(async move {
                let mut reader = BufReader::new(err).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(line);
                    }
                    notify.notify_waiters();
                }
                notify.notify_waiters();
            });
        }
        Ok(Client {
            child,
            stderr,
            notify,
        })
    }

    /// Waits until it says it holds its connections (`ready N`); false
    /// when it does not within `timeout`, or ends first.
    pub async fn wait_ready(&mut self, timeout: Duration) -> bool {
        self.wait_line("ready", timeout).await
    }

    /// Waits for a stderr line starting with `prefix`; false when none
    /// comes within `timeout`, or it ends first.
    pub async fn wait_line(&mut self, prefix: &str, timeout: Duration) -> bool {
        let ready = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !self.errors_with(prefix).is_empty() {
                    return true;
                }
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return false;
                }
                notified.await;
            }
        })
        .await;
        ready.unwrap_or(false)
    }

    /// Its stderr lines starting with `prefix`.
    pub fn errors_with(&self, prefix: &str) -> Vec<String> {
        self.stderr
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|l| l.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for it to end; its report.
    pub async fn report(mut self) -> anyhow::Result<serde_json::Value> {
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).await?;
        }
        let status = self.child.wait().await?;
        let errors = self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
        anyhow::ensure!(status.success(), "holdfast-bench {status}:\n{errors}");
        // Why connections failed, if any did (it names its first 5).
        for line in self.errors_with("connection ") {
            eprintln!("{line}");
        }
        serde_json::from_str(&out).map_err(|e| anyhow::anyhow!("no report ({e}):\n{errors}"))
    }
}

/// The load generator's first flags: `connections` held on `path` at
/// `target`, each taking `messages` items (a scenario adds the rest).
pub fn hold(
    target: impl ToString,
    path: &str,
    connections: impl ToString,
    messages: impl ToString,
) -> Vec<String> {
    argv![
        "--target",
        target,
        "--path",
        path,
        "--connections",
        connections,
        "--messages",
        messages
    ]
}

/// Runs `holdfast-bench <args>` to its end; its report.
pub async fn run(args: &[String]) -> anyhow::Result<serde_json::Value> {
    Client::spawn(args)?.report().await
}

/// What a wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WrkRun {
    /// Requests per second.
    pub rps: f64,
    /// Answers that were not 2xx or 3xx.
    pub non_2xx: u64,
}

/// `wrk -t<threads> -c<connections> -d<seconds>s <url>`.
pub async fn wrk(
    url: &str,
    threads: usize,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<WrkRun> {
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg(url)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("wrk ({e}): scripts/bench-env.sh installs it"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("wrk's output has no Requests/sec:\n{text}"))
}

/// Requests/sec and non-2xx answers from wrk's summary.
fn parse_wrk(text: &str) -> Option<WrkRun> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
    };
    Some(WrkRun {
        rps: field("Requests/sec:")?.parse().ok()?,
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summaries() {
        let out = "Running 10s test @ http://127.0.0.1:8080/\n  2 threads and 64 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.23ms  456.00us  12.00ms   90.00%\n  136920 requests in 10.00s, 20.1MB read\n  Non-2xx or 3xx responses: 12\nRequests/sec:  13692.04\nTransfer/sec:      2.01MB\n";
        assert_eq!(
            parse_wrk(out),
            Some(WrkRun {
                rps: 13692.04,
                non_2xx: 12
            })
        );
        assert_eq!(parse_wrk("Requests/sec: 5.5\n").map(|r| r.non_2xx), Some(0));
        assert_eq!(parse_wrk("garbage"), None);
    }
}
