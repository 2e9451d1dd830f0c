//! A running `holdfast` (runner + its three processes) with its own config
//! file, run directory and ports, and its merged log captured for tests to
//! wait on. Dropping it kills the runner; the children follow (parent-death
//! signal).

use crate::harness::binaries::binary;
use crate::harness::ports::free_port;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// How long start-up may take before a test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures a `holdfast` before starting it.
#[derive(Default)]
pub struct HoldfastBuilder {
    routes: Vec<String>,
    routes_file: Option<String>,
    settings: Vec<(String, String, String)>,
    args: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    bin_dir: Option<PathBuf>,
}

impl HoldfastBuilder {
    /// Adds a `--route` line.
    pub fn route(mut self, line: impl Into<String>) -> Self {
        self.routes.push(line.into());
        self
    }

    /// Uses a routes file with this content (instead of `--route`).
    pub fn routes_file(mut self, content: impl Into<String>) -> Self {
        self.routes_file = Some(content.into());
        self
    }

    /// Sets `[section] key=value` in the config file.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<String>) -> Self {
        self.settings
            .push((section.into(), key.into(), value.into()));
        self
    }

    /// Writes a file beside the config file (path relative to it).
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), content.into()));
        self
    }

    /// Adds a command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the `holdfast` in `dir` (and the processes it finds beside
    /// it), not the one under test: another build, for A/B runs.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// Starts it and waits until it logs that it is ready.
    pub async fn run(self) -> Holdfast {
        let holdfast = self.spawn().await;
        assert!(
            holdfast.wait_log("holdfast ready", START_TIMEOUT).await,
            "holdfast did not become ready:\n{}",
            holdfast.logs()
        );
        holdfast
    }

    /// Starts it without waiting.
    pub async fn spawn(self) -> Holdfast {
        let dir = crate::harness::scratch::scratch_dir("holdfast");
        let port = free_port();
        let publish_port = free_port();
        let publish_pull_port = free_port();
        let publish_sub_port = free_port();
        let command_port = free_port();
        let mut sections: Vec<(String, Vec<String>)> = vec![
            (
                "global".into(),
                vec![format!("rundir={}", dir.join("run").display())],
            ),
            ("runner".into(), vec![format!("http_port=127.0.0.1:{port}")]),
            ("proxy".into(), vec![]),
            (
                "handler".into(),
                vec![
                    format!("command_spec=tcp://127.0.0.1:{command_port}"),
                    format!("push_in_spec=tcp://127.0.0.1:{publish_pull_port}"),
                    format!("push_in_sub_specs=tcp://127.0.0.1:{publish_sub_port}"),
                    format!("push_in_http_port={publish_port}"),
                ],
            ),
        ];
        for (path, content) in &self.files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("test file folder");
            }
            std::fs::write(path, content).expect("test file");
        }
        if let Some(content) = &self.routes_file {
            std::fs::write(dir.join("routes"), content).expect("routes file");
            sections[2].1.push("routesfile=routes".into());
        }
        for (section, key, value) in &self.settings {
            match sections.iter_mut().find(|(s, _)| s == section) {
                Some((_, lines)) => lines.push(format!("{key}={value}")),
                None => sections.push((section.clone(), vec![format!("{key}={value}")])),
            }
        }
        let text: String = sections
            .iter()
            .map(|(s, lines)| format!("[{s}]\n{}\n", lines.join("\n")))
            .collect();
        let config = dir.join("holdfast.conf");
        std::fs::write(&config, text).expect("config file");
        let program = match &self.bin_dir {
            Some(dir) => dir.join("holdfast"),
            None => binary("holdfast"),
        };
        let mut command = Command::new(program);
        command.arg("--config").arg(&config);
        for route in &self.routes {
            command.arg("--route").arg(route);
        }
        command.args(&self.args);
        let (child, logs, notify) = spawn_logged(&mut command, "holdfast");
        let pid = child.id().expect("runner pid");
        Holdfast {
            child,
            pid,
            port,
            publish_port,
            publish_pull_port,
            publish_sub_port,
            command_port,
            dir,
            config,
            logs,
            notify,
        }
    }
}

/// Starts `command` with its output piped, kept line by line (both
/// streams) in the returned log, whose waiters the notifier wakes.
pub fn spawn_logged(
    command: &mut Command,
    what: &str,
) -> (Child, Arc<Mutex<Vec<String>>>, Arc<Notify>) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let notify = Arc::new(Notify::new());
    if let Some(out) = child.stdout.take() {
        tokio::spawn(capture(out, logs.clone(), notify.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(capture(err, logs.clone(), notify.clone()));
    }
    (child, logs, notify)
}

/// Keeps every line of `stream` in `logs`, waking `notify`'s waiters.
async fn capture(
    stream: impl AsyncRead + Unpin,
    logs: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if std::env::var_os("HOLDFAST_TEST_LOGS").is_some() {
            eprintln!("{line}");
        }
        logs.lock().expect("log lock").push(line);
        notify.notify_waiters();
    }
    notify.notify_waiters();
}

/// A running instance.
pub struct Holdfast {
    child: Child,
    /// The runner's process id.
    pub pid: u32,
    /// Client HTTP port.
    pub port: u16,
    /// HTTP publish port (`POST /publish/`).
    pub publish_port: u16,
    /// ZeroMQ PULL publish port.
    pub publish_pull_port: u16,
    /// ZeroMQ SUB publish port.
    pub publish_sub_port: u16,
    /// Command socket port.
    pub command_port: u16,
    /// Its folder (config, routes, run directory).
    pub dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
}

impl Holdfast {
    /// A builder.
    pub fn builder() -> HoldfastBuilder {
        HoldfastBuilder::default()
    }

    /// A builder with one route sending everything to `origin`.
    pub fn in_front_of(origin: &crate::Origin) -> HoldfastBuilder {
        HoldfastBuilder::default().route(format!("* {}", origin.target()))
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `http://127.0.0.1:<publish port><path>`.
    pub fn publish_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.publish_port)
    }

    /// Publishes `body` (`{"items": [...]}`) over HTTP; returns status and text.
    pub async fn publish(&self, body: &str) -> (u16, String) {
        let reply = crate::Client::new()
            .send(
                "POST",
                &self.publish_url("/publish/"),
                &[("Content-Type", "application/json")],
                body.to_owned(),
            )
            .await;
        (reply.status, reply.text())
    }

    /// Waits until `/metrics` (publish port) has a series `name` whose
    /// labels contain all of `labels`, with a value of at least `min`. The
    /// handler's own series are live; other processes report once a
    /// second, so this polls (there is nothing else to wait on).
    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[&str],
        min: f64,
        timeout: Duration,
    ) -> bool {
        let client = crate::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = client.get(&self.publish_url("/metrics")).await.text();
            if metric(&text, name, labels).is_some_and(|v| v >= min) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }

    /// Number of log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until some log line contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_count(needle, 1, timeout).await
    }

    /// Waits until `n` log lines contain `needle`.
    pub async fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count_log(needle) >= n {
                return true;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.count_log(needle) >= n,
            }
        }
    }

    /// The runner's children: `(pid, program name)`.
    pub fn children(&self) -> Vec<(i32, String)> {
        children_of(self.pid)
    }

    /// Resident memory of the runner's children, KiB: all of them, or only
    /// `program` (e.g. `holdfast-handler`).
    pub fn rss_kib(&self, program: Option<&str>) -> u64 {
        self.children()
            .iter()
            .filter(|(_, name)| program.is_none_or(|p| p == name))
            .filter_map(|(pid, _)| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .sum()
    }

    /// The pid of child `program` (e.g. `holdfast-proxy`).
    pub fn child_pid(&self, program: &str) -> Option<i32> {
        self.children()
            .into_iter()
            .find(|(_, name)| name == program)
            .map(|(pid, _)| pid)
    }

    /// Sends `signal` to the runner.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid as i32), signal);
    }

    /// Waits for the runner to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl Drop for Holdfast {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Processes whose parent is `parent`, with the file name of their program.
pub fn children_of(parent: u32) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised name: state, ppid, ...
        let Some(after) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let ppid: u32 = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid != parent {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let name = String::from_utf8_lossy(program)
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        found.push((pid, name));
    }
    found
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The value of the first series named `name` in Prometheus text whose
/// labels contain all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split('{').next() == Some(name) && labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
