//! Varnish, the caching CDN of the chaining tests, started with the
//! repository's VCL (`cdn/varnish/holdfast.vcl`, its backend port replaced
//! by the test origin's) in its own work folder, on a free loopback port.
//! `scripts/varnish-env.sh` installs it.

use crate::harness::ports::free_port;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// How long varnishd may take to compile the VCL and start its child.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running varnishd.
pub struct Varnish {
    child: Child,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Varnish {
    /// Starts varnishd caching for the origin at `backend` (`host:port`),
    /// with a small store and one small thread pool (the tests' load).
    pub async fn start(backend: &str) -> Varnish {
        Varnish::start_with(
            backend,
            "malloc,32m",
            &[("thread_pools", "1"), ("thread_pool_min", "10")],
        )
        .await
    }

    /// Starts varnishd with this storage (`-s`) and these parameters
    /// (`-p`), its defaults otherwise (benchmarks: `malloc,256m`, none).
    pub async fn start_with(backend: &str, storage: &str, params: &[(&str, &str)]) -> Varnish {
        let (host, backend_port) = backend.rsplit_once(':').expect("host:port");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let vcl = std::fs::read_to_string(root.join("cdn/varnish/holdfast.vcl"))
            .expect("cdn/varnish/holdfast.vcl");
        let vcl = vcl
            .replace(
                "\"127.0.0.1\";\n    .port",
                &format!("\"{host}\";\n    .port"),
            )
            .replace("\"8080\"", &format!("\"{backend_port}\""));
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("hf-varnish-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("varnish folder");
        std::fs::write(dir.join("holdfast.vcl"), vcl).expect("VCL");
        let mut command = Command::new("varnishd");
        command.args(["-F", "-j", "none", "-T", "none", "-s", storage]);
        for (name, value) in params {
            command.arg("-p").arg(format!("{name}={value}"));
        }
        let mut child = command
            .arg("-n")
            .arg(dir.join("work"))
            .arg("-a")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-f")
            .arg(dir.join("holdfast.vcl"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("varnishd runs (scripts/varnish-env.sh installs it)");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(Notify::new());
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (logs, notify) = (logs.clone(), notify.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.lock().unwrap().push(line);
                    notify.notify_waiters();
                }
                notify.notify_waiters();
            });
        }
        let varnish = Varnish {
            child,
            port,
            dir,
            logs,
        };
        // The listening socket exists before the child starts; once it
        // has, requests are served.
        let started = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let logs = varnish.logs.lock().unwrap().join("\n");
                if logs.contains("Child launched OK") {
                    return true;
                }
                if logs.contains("Error") && !logs.contains("Child") {
                    return false;
                }
                notified.await;
            }
        })
        .await;
        assert_eq!(
            started,
            Ok(true),
            "varnishd did not start:\n{}",
            varnish.logs()
        );
        // The child listens a moment after it started; nothing says when.
        let listening = tokio::time::timeout(START_TIMEOUT, async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            listening.is_ok(),
            "varnishd does not listen:\n{}",
            varnish.logs()
        );
        varnish
    }

    /// varnishd's process id (its manager; the child that serves is its
    /// child).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `host:port` for a route line.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What varnishd printed.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        // SIGTERM: the manager stops its cache process, then exits; only
        // then is nothing left writing to the work folder.
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
