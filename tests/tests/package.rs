//! The Debian package, installed on this machine as an operator would:
//! `scripts/package-deb.sh` builds it, `dpkg -i` installs it, the installed
//! `holdfast` runs with the installed config as the package's own user,
//! proxies, holds a stream and delivers publishes (HTTP and the installed
//! `holdfast-publish`), and `dpkg --purge` removes every file. Its own test
//! binary: it uses the default ports and changes the system (needs root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use holdfast_tests::harness::holdfast::{children_of, spawn_logged};
use holdfast_tests::{Client, Origin};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(30);

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::process::Command::new("dpkg")
            .args(["--purge", "holdfast"])
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all("/run/holdfast");
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_installs_runs_and_purges() {
    assert_eq!(
        run("id", &["-u"]).trim(),
        "0",
        "installing a package needs root (the CI machine runs the tests as root)"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // The build the tests run (the test command's: release with debug
    // assertions), so nothing is built again: what is tested here is the
    // packaging.
    let dir = holdfast_tests::harness::binaries::bin_dir();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let mut package = std::process::Command::new(root.join("scripts/package-deb.sh"));
    let built = holdfast_tests::harness::binaries::without_cargo_crate_env(&mut package)
        .env("HOLDFAST_PACKAGE_PROFILE", profile)
        .output()
        .expect("scripts/package-deb.sh");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let built = String::from_utf8_lossy(&built.stdout).into_owned();
    let deb = root.join(built.lines().last().expect("package path").trim());
    assert!(deb.exists(), "{}", deb.display());

    let _installed = Installed;
    run("dpkg", &["-i", deb.to_str().unwrap()]);
    for path in [
        "/usr/bin/holdfast",
        "/usr/bin/holdfast-publish",
        "/usr/libexec/holdfast/holdfast-connmgr",
        "/usr/libexec/holdfast/holdfast-proxy",
        "/usr/libexec/holdfast/holdfast-handler",
        "/etc/holdfast/holdfast.conf",
        "/etc/holdfast/routes",
        "/lib/systemd/system/holdfast.service",
    ] {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    run("id", &["holdfast"]);
    let unit = std::fs::read_to_string("/lib/systemd/system/holdfast.service").unwrap();
    for line in [
        "User=holdfast",
        "Restart=on-failure",
        "LimitNOFILE=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/bin/holdfast --config /etc/holdfast/holdfast.conf",
    ] {
        assert!(unit.contains(line), "unit lacks {line:?}");
    }
    if Path::new("/usr/bin/systemd-analyze").exists() {
        run(
            "systemd-analyze",
            &["verify", "/lib/systemd/system/holdfast.service"],
        );
    }

    // As the service runs it: its user, its run folder (systemd's
    // RuntimeDirectory), the installed config; the route to a test origin.
    let origin = Origin::start().await;
    std::fs::create_dir_all("/run/holdfast").unwrap();
    run("chown", &["holdfast:holdfast", "/run/holdfast"]);
    let mut command = Command::new("runuser");
    command
        .args(["-u", "holdfast", "--", "/usr/bin/holdfast"])
        .args(["--config", "/etc/holdfast/holdfast.conf"])
        .arg("--route")
        .arg(format!("* {}", origin.target()))
        .current_dir("/");
    let (mut child, logs, notify) = spawn_logged(&mut command, "runuser");
    let text = || logs.lock().unwrap().join("\n");
    let ready = tokio::time::timeout(WAIT, async {
        loop {
            let notified = notify.notified();
            if text().contains("holdfast ready") {
                return;
            }
            notified.await;
        }
    })
    .await;
    assert!(
        ready.is_ok(),
        "the installed holdfast never became ready:\n{}",
        text()
    );

    let client = Client::new();
    assert_eq!(client.get("http://127.0.0.1:7999/plain").await.status, 200);
    let mut stream = client.open("http://127.0.0.1:7999/grip").await;
    assert!(stream.read_until("initial\n", WAIT).await, "{}", text());
    let item = serde_json::json!({"items": [{"channel": "test",
        "formats": {"http-stream": {"content": "over http\n"}}}]});
    let reply = client
        .send(
            "POST",
            "http://127.0.0.1:5561/publish/",
            &[("Content-Type", "application/json")],
            item.to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    run(
        "/usr/bin/holdfast-publish",
        &["test", "from holdfast-publish"],
    );
    assert!(
        stream
            .read_until("initial\nover http\nfrom holdfast-publish\n", WAIT)
            .await,
        "{:?}\n{}",
        stream.text(),
        text()
    );

    // The runner (runuser's child) stops cleanly on SIGTERM, as systemd
    // sends it.
    let runuser = child.id().expect("runuser pid");
    let (runner, _) = children_of(runuser)
        .into_iter()
        .find(|(_, name)| name == "holdfast")
        .expect("holdfast under runuser");
    let _ = kill(Pid::from_raw(runner), Signal::SIGTERM);
    let status = tokio::time::timeout(WAIT, child.wait()).await;
    assert!(
        matches!(&status, Ok(Ok(s)) if s.success()),
        "{status:?}\n{}",
        text()
    );

    run("dpkg", &["--purge", "holdfast"]);
    for path in [
        "/usr/bin/holdfast",
        "/usr/libexec/holdfast",
        "/etc/holdfast",
        "/lib/systemd/system/holdfast.service",
    ] {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }
}
