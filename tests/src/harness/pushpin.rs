//! Pushpin 1.36 from Debian (`scripts/pushpin-env.sh` installs it), run by
//! its own runner with a private config, run directory and loopback ports,
//! for the tests that mix its processes with Holdfast's. With
//! [`PushpinBuilder::connmgr`] its runner starts `holdfast-connmgr` in
//! condure's place (`[runner] condure_bin`), as a migration's first step.

use crate::harness::binaries::binary;
use crate::harness::holdfast::{children_of, spawn_logged};
use crate::harness::ports::free_port;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// How long start-up may take before a test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures a Pushpin before starting it.
#[derive(Default)]
pub struct PushpinBuilder {
    holdfast_connmgr: bool,
    routes: Vec<String>,
    settings: Vec<(String, String, String)>,
    log_level: Option<u8>,
}

impl PushpinBuilder {
    /// Adds a line to the routes file.
    pub fn route(mut self, line: impl Into<String>) -> Self {
        self.routes.push(line.into());
        self
    }

    /// Sets `[section] key=value` in its config (after the harness's own).
    pub fn set(mut self, section: &str, key: &str, value: impl Into<String>) -> Self {
        self.settings
            .push((section.into(), key.into(), value.into()));
        self
    }

    /// Its `log_level` (2 unless set). Below 2 its processes do not say
    /// they started, and only its probe route tells it is ready.
    pub fn log_level(mut self, level: u8) -> Self {
        self.log_level = Some(level);
        self
    }

    /// Runs `holdfast-connmgr` in condure's place.
    pub fn connmgr(mut self) -> Self {
        self.holdfast_connmgr = true;
        self
    }

    /// Starts it and waits until its proxy, handler, zurl and connection
    /// manager have said they started.
    pub async fn run(self) -> Pushpin {
        let dir = crate::harness::scratch::scratch_dir("pushpin");
        let run = dir.join("run");
        std::fs::create_dir_all(&run).expect("pushpin run folder");
        std::fs::create_dir_all(dir.join("log")).expect("pushpin log folder");
        let port = free_port();
        let publish_port = free_port();
        let (pull, sub, command) = (free_port(), free_port(), free_port());
        let connmgr = if self.holdfast_connmgr {
            binary("holdfast-connmgr").display().to_string()
        } else {
            "condure".to_owned()
        };
        let run = run.display();
        // Pushpin's packaged config, reduced to what differs from its
        // defaults here: private folders and ports, and zurl (which 1.36's
        // proxy sends origin requests through) on the run folder.
        let config = format!(
            "[global]\ninclude={{libdir}}/internal.conf\nrundir={run}\nipc_prefix=pushpin-\n\
             [runner]\nservices=condure,zurl,pushpin-proxy,pushpin-handler\n\
             http_port=127.0.0.1:{port}\nlogdir={log}\nlog_level={level}\ncondure_bin={connmgr}\n\
             [proxy]\nroutesfile=routes\nsig_iss=pushpin\nsig_key=changeme\n\
             zurl_out_specs=ipc://{run}/pushpin-zurl-in\n\
             zurl_out_stream_specs=ipc://{run}/pushpin-zurl-in-stream\n\
             zurl_in_specs=ipc://{run}/pushpin-zurl-out\n\
             [handler]\npush_in_spec=tcp://127.0.0.1:{pull}\n\
             push_in_sub_specs=tcp://127.0.0.1:{sub}\npush_in_http_addr=127.0.0.1\n\
             push_in_http_port={publish_port}\ncommand_spec=tcp://127.0.0.1:{command}\n\
             stats_spec=ipc://{run}/pushpin-stats\n",
            log = dir.join("log").display(),
            level = self.log_level.unwrap_or(2),
        );
        let config = with_settings(config, &self.settings);
        std::fs::write(dir.join("pushpin.conf"), config).expect("pushpin.conf");
        // An origin of the harness's own on a host of its own: what the
        // readiness probe below asks for, through zurl as every request.
        let ready_origin = crate::Origin::start().await;
        let routes = format!(
            "{READY_HOST} {}\n{}\n",
            ready_origin.target(),
            self.routes.join("\n")
        );
        std::fs::write(dir.join("routes"), routes).expect("routes");
        let mut command = Command::new("pushpin");
        command
            .arg("--config")
            .arg(dir.join("pushpin.conf"))
            .arg("--merge-output");
        let (child, logs, notify) =
            spawn_logged(&mut command, "pushpin (scripts/pushpin-env.sh installs it)");
        let pid = child.id().expect("pushpin pid");
        let pushpin = Pushpin {
            child,
            pid,
            port,
            publish_port,
            dir,
            logs,
            notify,
            _ready_origin: ready_origin,
        };
        let connmgr_started = if self.holdfast_connmgr {
            "connmgr ready"
        } else {
            "[condure] started"
        };
        let said = if self.log_level.unwrap_or(2) >= 2 {
            vec![
                "[proxy] started",
                "[handler] started",
                "[zurl] started",
                connmgr_started,
            ]
        } else {
            Vec::new()
        };
        for started in said {
            assert!(
                pushpin.wait_log(started, START_TIMEOUT).await,
                "pushpin did not log {started:?}:\n{}",
                pushpin.logs()
            );
        }
        pushpin.wait_answering().await;
        pushpin
    }
}

/// `config` with `settings` added to their sections (a section not in it
/// yet is appended).
fn with_settings(config: String, settings: &[(String, String, String)]) -> String {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in config.lines() {
        match line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            Some(name) => sections.push((name.to_owned(), Vec::new())),
            None => match sections.last_mut() {
                Some((_, lines)) => lines.push(line.to_owned()),
                None => sections.push((String::new(), vec![line.to_owned()])),
            },
        }
    }
    for (section, key, value) in settings {
        let line = format!("{key}={value}");
        match sections.iter_mut().find(|(s, _)| s == section) {
            Some((_, lines)) => {
                lines.retain(|l| !l.starts_with(&format!("{key}=")));
                lines.push(line);
            }
            None => sections.push((section.clone(), vec![line])),
        }
    }
    sections
        .iter()
        .map(|(s, lines)| format!("[{s}]\n{}\n", lines.join("\n")))
        .collect()
}

/// Host name of the readiness probe's route.
const READY_HOST: &str = "ready.harness";

/// A running Pushpin.
pub struct Pushpin {
    child: Child,
    pid: u32,
    /// Client HTTP port.
    pub port: u16,
    /// HTTP publish port (`POST /publish/`).
    pub publish_port: u16,
    dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
    _ready_origin: crate::Origin,
}

impl Pushpin {
    /// Asks the probe route until it answers. Pushpin's proxy says
    /// "started" before its SUB and PUB sockets have their peers'
    /// subscriptions (zurl's, connmgr's), and packets sent meanwhile are
    /// lost (the client waits forever with condure; Holdfast's connmgr
    /// sees the gap in `seq` and answers 502). Nothing it logs marks the
    /// end of that window, so this polls.
    async fn wait_answering(&self) {
        let request = format!("GET / HTTP/1.1\r\nHost: {READY_HOST}\r\nConnection: close\r\n\r\n");
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                // Not listening yet (below log level 2 nothing said when).
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "pushpin never listened:\n{}",
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let answer =
                crate::raw_exchange(&addr, request.as_bytes(), Duration::from_secs(1)).await;
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
            // Refused at once while nothing listens: not a busy loop.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "pushpin never answered its probe route (last answer {answer:?}):\n{}",
                self.logs()
            );
        }
    }

    /// A builder.
    pub fn builder() -> PushpinBuilder {
        PushpinBuilder::default()
    }

    /// Its runner's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything its runner printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }

    /// Waits until some line contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_count(needle, 1, timeout).await
    }

    /// Waits until `n` lines contain `needle`.
    pub async fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let count = || {
            let logs = self.logs.lock().expect("log lock");
            logs.iter().filter(|l| l.contains(needle)).count()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if count() >= n {
                return true;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return count() >= n,
            }
        }
    }
}

impl Drop for Pushpin {
    fn drop(&mut self) {
        // Pushpin's runner stops its children on SIGTERM, but nothing stops
        // them if it is killed: end it cleanly, then kill what is left.
        let children = children_of(self.pid);
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.start_kill();
        for (pid, _) in children {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
