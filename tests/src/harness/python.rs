//! Python programs from `tests/python/`, run with the virtualenv that
//! `scripts/test.sh` fills: one-shot clients that print a JSON result, and
//! the `websockets` origin ([`PyWsOrigin`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The virtualenv's interpreter.
pub fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which installs the Python libraries",
        python.display()
    );
    python
}

/// A script in `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Runs `tests/python/<name>` with `args`; its standard output parsed as
/// one JSON value. Fails the test if it does not finish within `timeout`
/// or exits with an error.
pub async fn run_json(name: &str, args: &[&str], timeout: Duration) -> serde_json::Value {
    let output = tokio::time::timeout(
        timeout,
        Command::new(python())
            .arg(script(name))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} {args:?} did not finish within {timeout:?}"))
    .expect("python ran");
    assert!(
        output.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `tests/python/ws_origin.py`: a WebSocket origin on the `websockets`
/// library (echo, bursts right after the handshake, a slow reader).
pub struct PyWsOrigin {
    /// Its port on 127.0.0.1.
    pub port: u16,
    closes: mpsc::UnboundedReceiver<Option<u16>>,
    _child: Child,
}

impl PyWsOrigin {
    /// Starts it and waits until it listens.
    pub async fn start() -> PyWsOrigin {
        let mut child = Command::new(python())
            .arg(script("ws_origin.py"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start ws_origin.py");
        let stdout = child.stdout.take().expect("origin stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("ws_origin.py started in time")
            .expect("origin output")
            .expect("origin printed its port");
        let port: serde_json::Value = serde_json::from_str(&first).expect("port line");
        let port = port["port"].as_u64().expect("port") as u16;
        // Unbounded: one entry per connection a test opens, read by the test.
        let (tx, closes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(event["closed"].as_u64().map(|c| c as u16));
                }
            }
        });
        PyWsOrigin {
            port,
            closes,
            _child: child,
        }
    }

    /// `127.0.0.1:<port>`, for a route.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The close code of the next connection to end (`None`: it ended
    /// without one), or `None` if none ends within `timeout`.
    pub async fn next_close(&mut self, timeout: Duration) -> Option<Option<u16>> {
        tokio::time::timeout(timeout, self.closes.recv())
            .await
            .ok()
            .flatten()
    }
}
