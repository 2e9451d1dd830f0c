//! nginx (Debian's `nginx-light`, `scripts/bench-env.sh` installs it), as an
//! origin or a reverse proxy of the benchmarks, in a folder of its own: one
//! worker, its servers each on a free loopback port, its log lines on
//! stderr. It is ready once its worker started (the listening sockets
//! are bound before the worker is forked).

use crate::harness::holdfast::spawn_logged;
use crate::harness::ports::free_port;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// How long start-up may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures nginx before starting it.
#[derive(Default)]
pub struct NginxBuilder {
    servers: Vec<(String, String)>,
    http: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
}

impl NginxBuilder {
    /// A server named `name` (see [`Nginx::port`]): `body` is what goes in
    /// its `server {}` block besides its `listen`, with `{dir}` standing
    /// for nginx's folder (for log files).
    pub fn server(mut self, name: &str, body: &str) -> Self {
        self.servers.push((name.to_owned(), body.to_owned()));
        self
    }

    /// A line for the `http {}` block (an `upstream`, say), `{dir}` and
    /// `{port:<server name>}` replaced.
    pub fn http(mut self, line: &str) -> Self {
        self.http.push(line.to_owned());
        self
    }

    /// A file in nginx's folder (`www/b/64`, a certificate...).
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_owned(), content.into()));
        self
    }

    /// Starts it and waits until its worker runs.
    pub async fn run(self) -> Nginx {
        let dir = crate::harness::scratch::scratch_dir("nginx");
        for (path, content) in &self.files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("nginx file folder");
            }
            std::fs::write(path, content).expect("nginx file");
        }
        let ports: Vec<(String, u16)> = self
            .servers
            .iter()
            .map(|(name, _)| (name.clone(), free_port()))
            .collect();
        let fill = |text: &str| {
            let mut text = text.replace("{dir}", &dir.display().to_string());
            for (name, port) in &ports {
                text = text.replace(&format!("{{port:{name}}}"), &port.to_string());
            }
            text
        };
        let servers: String = self
            .servers
            .iter()
            .zip(&ports)
            .map(|((_, body), (_, port))| {
                format!(
                    "  server {{\n    listen 127.0.0.1:{port};\n{}\n  }}\n",
                    fill(body)
                )
            })
            .collect();
        let http: String = self
            .http
            .iter()
            .map(|l| format!("  {}\n", fill(l)))
            .collect();
        let d = dir.display();
        let config = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr notice;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
             \x20 fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n\
             \x20 keepalive_requests 1000000;\n{http}{servers}}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), config).expect("nginx.conf");
        let mut command = Command::new("nginx");
        command
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg("stderr");
        let (child, logs, notify) =
            spawn_logged(&mut command, "nginx (scripts/bench-env.sh installs it)");
        let nginx = Nginx {
            child,
            dir,
            ports,
            logs,
            notify,
        };
        let started = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                let notified = nginx.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let logs = nginx.logs();
                if logs.contains("start worker process") {
                    return true;
                }
                if logs.contains("[emerg]") {
                    return false;
                }
                notified.await;
            }
        })
        .await;
        assert_eq!(started, Ok(true), "nginx did not start:\n{}", nginx.logs());
        nginx
    }
}

/// A running nginx.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    ports: Vec<(String, u16)>,
    logs: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
}

impl Nginx {
    /// A builder.
    pub fn builder() -> NginxBuilder {
        NginxBuilder::default()
    }

    /// The port of server `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no nginx server {name}"))
    }

    /// `127.0.0.1:<port>` of server `name`.
    pub fn target(&self, name: &str) -> String {
        format!("127.0.0.1:{}", self.port(name))
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lines of a log file in its folder (0 when there is none yet).
    pub fn count_lines(&self, file: &str) -> usize {
        std::fs::read_to_string(self.dir.join(file)).map_or(0, |t| t.lines().count())
    }

    /// Its master process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What it logged.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker, then itself (a killed
        // master would leave its worker serving).
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            for _ in 0..200 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
