//! One child process: how to start it, and its output.

use crate::logs::LogSink;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// What a child says about itself, read from its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// It logged its `ready` phase.
    Ready,
}

/// How to start one of the processes.
#[derive(Debug, Clone)]
pub struct Service {
    /// Short name: `connmgr`, `proxy`, `handler`.
    pub name: Arc<str>,
    /// Program path.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment (secrets stay out of `ps` output).
    pub env: Vec<(String, String)>,
    /// How long it gets to exit after SIGTERM before SIGKILL.
    pub stop_grace: std::time::Duration,
    /// Whether it logs a ready phase. A program that does not (Pushpin's
    /// condure) counts as ready once started: the proxy and handler wait
    /// for its sockets themselves.
    pub announces_ready: bool,
}

impl Service {
    /// Starts the child with its output piped into `sink` and its lifecycle
    /// events sent to `events`.
    pub fn spawn(
        &self,
        sink: &LogSink,
        events: mpsc::UnboundedSender<(Arc<str>, Event)>,
    ) -> std::io::Result<Child> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // If the runner dies without cleaning up (SIGKILL), the kernel sends
        // the child SIGTERM, so no process is left behind.
        #[allow(unsafe_code)]
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
        // no memory of the parent, as pre_exec requires.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn()?;
        if !self.announces_ready {
            let _ = events.send((self.name.clone(), Event::Ready));
        }
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(
                out,
                self.name.clone(),
                sink.clone(),
                events.clone(),
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(err, self.name.clone(), sink.clone(), events));
        }
        Ok(child)
    }
}

/// Copies a child's output line by line, watching for its ready phase.
async fn forward(
    stream: impl AsyncRead + Unpin,
    name: Arc<str>,
    sink: LogSink,
    events: mpsc::UnboundedSender<(Arc<str>, Event)>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        // The ready line, as text (`phase="ready"`) or JSON (`"phase":"ready"`).
        if line.contains("phase=\"ready\"") || line.contains("\"phase\":\"ready\"") {
            let _ = events.send((name.clone(), Event::Ready));
        }
        sink.line(&name, &line);
    }
}
