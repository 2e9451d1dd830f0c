//! Headless Chromium (Debian's, installed by `scripts/browser-env.sh`)
//! showing one page, each in a profile of its own; pages report what they
//! see by requesting URLs the test records, so no automation protocol is
//! needed.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;

/// Headless, sandbox off (root), and no background traffic: this machine's
/// closed network refuses it.
const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Chromium's path (`HOLDFAST_CHROMIUM`, default `/usr/bin/chromium`).
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("HOLDFAST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it installs Debian's chromium)",
        path.display()
    );
    path
}

/// Headless Chromium showing `url`; stopped when dropped.
pub struct Browser {
    child: tokio::process::Child,
    profile: PathBuf,
}

impl Browser {
    /// Opens `url`.
    pub fn open(url: &str) -> Browser {
        // A profile of its own: Chromium instances sharing one hand their
        // work to the first and exit.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let profile = std::env::temp_dir().join(format!("hf-chromium-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let child = tokio::process::Command::new(chromium())
            .args(HEADLESS)
            .arg(format!("--user-data-dir={}", profile.display()))
            // Its own temporary files (singleton sockets) go with the profile.
            .env("TMPDIR", private_tmp(&profile))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // A group of its own, so its helper processes go with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromium started");
        Browser { child, profile }
    }
}

/// A `tmp` folder inside `dir` (created), for Chromium's `TMPDIR`: left to
/// itself it makes `org.chromium.Chromium.*` folders in the system's temp
/// folder and never removes them.
fn private_tmp(dir: &std::path::Path) -> PathBuf {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("Chromium's temp folder");
    tmp
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGTERM lets Chromium take its helper processes down with it;
        // whatever of its group is still there after a second is killed.
        // Its profile (several MiB) goes once none of them can write to it.
        if let Some(pid) = self.child.id() {
            let group = Pid::from_raw(-(pid as i32));
            let _ = kill(group, Signal::SIGTERM);
            for _ in 0..50 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = kill(group, Signal::SIGKILL);
            for _ in 0..100 {
                if kill(group, None).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A picture of `url` once it has gone quiet (no request open; at most a
/// few virtual seconds of timers), as PNG bytes.
pub async fn screenshot(url: &str) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("hf-shot-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    let file = dir.join("page.png");
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(chromium())
            .args(HEADLESS)
            .args([
                "--hide-scrollbars",
                "--window-size=900,600",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .env("TMPDIR", private_tmp(&dir))
            .arg(format!("--screenshot={}", file.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .expect("chromium took its screenshot in time")
    .expect("chromium ran");
    assert!(status.success(), "chromium --screenshot failed: {status}");
    let png = std::fs::read(&file).expect("screenshot written");
    let _ = std::fs::remove_dir_all(&dir);
    png
}
