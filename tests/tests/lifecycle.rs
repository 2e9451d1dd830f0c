//! The runner's life cycle: start-up errors, signals, restarts, reloads.
//! In their own test binary because they send signals.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use holdfast_tests::harness::holdfast::alive;
use holdfast_tests::{free_port, Client, Holdfast, Origin};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_everything_and_cleans_up() {
    let origin = Origin::start().await;
    let mut hf = Holdfast::in_front_of(&origin).run().await;
    assert_eq!(Client::new().get(&hf.url("/")).await.status, 200);
    let children = hf.children();
    let names: Vec<&str> = children.iter().map(|(_, n)| n.as_str()).collect();
    for expected in ["holdfast-connmgr", "holdfast-proxy", "holdfast-handler"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let rundir = hf.dir.join("run");
    assert!(
        std::fs::read_dir(&rundir).unwrap().count() > 0,
        "ipc sockets exist while running"
    );

    hf.signal(Signal::SIGTERM);
    let status = hf.wait_exit(WAIT).await.expect("runner exits within 15 s");
    assert!(status.success(), "{status:?}\n{}", hf.logs());
    for (pid, name) in children {
        assert!(!alive(pid), "{name} ({pid}) left behind");
    }
    assert!(
        !rundir.exists() || std::fs::read_dir(&rundir).unwrap().count() == 0,
        "sockets left in {}",
        rundir.display()
    );
    assert!(hf.logs().contains("all services stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_proxy_is_restarted_and_serves_again() {
    let origin = Origin::start().await;
    let hf = Holdfast::in_front_of(&origin).run().await;
    let client = Client::new();
    assert_eq!(client.get(&hf.url("/before")).await.status, 200);
    let proxy = hf.child_pid("holdfast-proxy").expect("proxy running");
    kill(Pid::from_raw(proxy), Signal::SIGKILL).unwrap();
    assert!(hf.wait_log("proxy exited", WAIT).await, "{}", hf.logs());
    assert!(
        hf.wait_log("proxy restarted and ready", WAIT).await,
        "{}",
        hf.logs()
    );
    let new_proxy = hf.child_pid("holdfast-proxy").expect("proxy running again");
    assert_ne!(new_proxy, proxy);
    let reply = Client::new().get(&hf.url("/after")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["uri"], "/after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_routes() {
    let a = Origin::start().await;
    let b = Origin::start().await;
    let hf = Holdfast::builder()
        .routes_file(format!("* {}\n", a.target()))
        .run()
        .await;
    let client = Client::new();
    client.get(&hf.url("/")).await;
    assert_eq!((a.requests(), b.requests()), (1, 0));

    // A broken file is refused and the old routes stay.
    std::fs::write(hf.dir.join("routes"), "* nonsense\n").unwrap();
    hf.signal(Signal::SIGHUP);
    assert!(
        hf.wait_log("routes not reloaded", WAIT).await,
        "{}",
        hf.logs()
    );
    client.get(&hf.url("/")).await;
    assert_eq!((a.requests(), b.requests()), (2, 0));

    std::fs::write(hf.dir.join("routes"), format!("* {}\n", b.target())).unwrap();
    hf.signal(Signal::SIGHUP);
    assert!(hf.wait_log("routes reloaded", WAIT).await, "{}", hf.logs());
    client.get(&hf.url("/")).await;
    assert_eq!((a.requests(), b.requests()), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_routes_stop_start_up_with_a_message() {
    let mut hf = Holdfast::builder().route("* no-port-here").spawn().await;
    let status = hf.wait_exit(WAIT).await.expect("runner exits");
    assert!(!status.success());
    for line in [
        "bad target \"no-port-here\": expected host:port",
        "proxy exited during start-up",
    ] {
        assert!(
            hf.wait_log(line, WAIT).await,
            "{line:?} not in\n{}",
            hf.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_stops_start_up_with_a_message() {
    let mut hf = Holdfast::builder()
        .set("runner", "client_maxconn", "many")
        .spawn()
        .await;
    let status = hf.wait_exit(WAIT).await.expect("runner exits");
    assert!(!status.success());
    // The process may be gone before its last line is read: wait for the line.
    assert!(
        hf.wait_log(
            "[runner] client_maxconn=\"many\": expected a non-negative whole number",
            WAIT
        )
        .await,
        "{}",
        hf.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushpin_conf_loads() {
    let origin = Origin::start().await;
    let dir = std::env::temp_dir().join(format!("hf-pushpin-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/pushpin.conf");
    let port = free_port();
    let conf = std::fs::read_to_string(fixture)
        .unwrap()
        .replace("http_port=7999", &format!("http_port=127.0.0.1:{port}"))
        .replace(
            "tcp://127.0.0.1:5563",
            &format!("tcp://127.0.0.1:{}", free_port()),
        );
    std::fs::write(dir.join("pushpin.conf"), conf).unwrap();
    std::fs::write(dir.join("routes"), format!("* {}\n", origin.target())).unwrap();
    let mut child =
        tokio::process::Command::new(holdfast_tests::harness::binaries::binary("holdfast"))
            .arg("--config")
            .arg(dir.join("pushpin.conf"))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains("holdfast ready");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(ready, "{}", seen.join("\n"));
    let warnings: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("not used by Holdfast"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning line for unused keys: {seen:?}"
    );
    assert!(
        warnings[0].contains("[runner] services") && warnings[0].contains("[proxy] zurl_in_specs")
    );
    let reply = Client::new()
        .get(&format!("http://127.0.0.1:{port}/conf"))
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        dir.join("run").exists(),
        "relative rundir resolved beside the config"
    );
    let _ = kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM);
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logfile_receives_the_merged_log() {
    let origin = Origin::start().await;
    let log = std::env::temp_dir().join(format!("hf-logfile-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut hf = Holdfast::in_front_of(&origin)
        .arg("--logfile")
        .arg(log.display().to_string())
        .spawn()
        .await;
    // Nothing reaches standard output, so readiness is read from the file.
    let ready = tokio::time::timeout(WAIT, async {
        loop {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("holdfast ready")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "no ready line in {}", log.display());
    assert_eq!(Client::new().get(&hf.url("/logged")).await.status, 200);
    hf.signal(Signal::SIGTERM);
    hf.wait_exit(WAIT).await.expect("exits");
    let text = std::fs::read_to_string(&log).unwrap();
    for prefix in ["[runner]", "[connmgr]", "[proxy]", "[handler]"] {
        assert!(text.contains(prefix), "{prefix} missing:\n{text}");
    }
    assert!(
        text.contains("GET /logged -> 200"),
        "access line missing:\n{text}"
    );
    assert!(
        hf.logs().is_empty(),
        "stdout should be empty: {}",
        hf.logs()
    );
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runner_leaves_no_orphans() {
    let origin = Origin::start().await;
    let mut hf = Holdfast::in_front_of(&origin).run().await;
    let children = hf.children();
    assert_eq!(children.len(), 3, "{children:?}");
    // SIGKILL: the runner cannot clean up; the parent-death signal must, and
    // the children must act on it although their stderr is now a broken pipe.
    hf.signal(Signal::SIGKILL);
    hf.wait_exit(WAIT).await.expect("runner gone");
    let deadline = tokio::time::Instant::now() + WAIT;
    while children.iter().any(|(pid, _)| alive(*pid)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "orphans left: {:?}",
            children
                .iter()
                .filter(|(p, _)| alive(*p))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM with `shutdown_grace=2`: held streams and long-polls get a clean
/// end at once, a request in flight that finishes within the grace period
/// gets its answer, one that would take longer is cut at the end of it, and
/// the runner is gone soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_within_the_configured_grace_period() {
    use holdfast_tests::harness::scripted::DELAY;
    use holdfast_tests::{answer, Scripted};
    let origin = Scripted::start(|seen| match seen.path.as_str() {
        "/stream" => answer(
            200,
            &[("Grip-Hold", "stream"), ("Grip-Channel", "s")],
            "initial\n",
        ),
        "/poll" => answer(
            200,
            &[("Grip-Hold", "response"), ("Grip-Channel", "p")],
            "no news\n",
        ),
        "/slow" => answer(200, &[(DELAY, "800")], "slow done\n"),
        _ => answer(200, &[(DELAY, "30000")], "too late\n"),
    })
    .await;
    let mut hf = Holdfast::builder()
        .route(format!("* {}", origin.target()))
        .set("runner", "shutdown_grace", "2")
        .arg("--verbose")
        .run()
        .await;
    let client = Client::new();
    let mut stream = client.open(&hf.url("/stream")).await;
    assert!(stream.read_until("initial\n", WAIT).await);
    let poll = tokio::spawn({
        let url = hf.url("/poll");
        async move { Client::new().get(&url).await }
    });
    assert!(
        hf.wait_log_count("session held", 2, WAIT).await,
        "{}",
        hf.logs()
    );
    let slow = tokio::spawn({
        let url = hf.url("/slow");
        async move { Client::new().get(&url).await }
    });
    let slower = tokio::spawn({
        let url = hf.url("/slower");
        async move { Client::new().open(&url).await }
    });
    for path in ["/slow", "/slower"] {
        assert!(
            origin.wait_for(WAIT, |s| s.path == path).await.is_some(),
            "{path} never reached the origin"
        );
    }

    let signalled = tokio::time::Instant::now();
    hf.signal(Signal::SIGTERM);
    assert!(stream.read_to_end(WAIT).await, "{}", hf.logs());
    assert!(
        !stream.broken,
        "the stream was cut, not ended\n{}",
        hf.logs()
    );
    assert_eq!(stream.text(), "initial\n");
    let poll = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert_eq!((poll.status, poll.text()), (200, "no news\n".to_owned()));
    let slow = tokio::time::timeout(WAIT, slow).await.unwrap().unwrap();
    assert_eq!((slow.status, slow.text()), (200, "slow done\n".to_owned()));
    // The 30 s request cannot finish: at most its head-less connection is
    // closed once the grace period is over.
    let slower = tokio::time::timeout(WAIT, slower).await;
    assert!(
        !matches!(&slower, Ok(Ok(s)) if s.status == 200),
        "a 30 s answer arrived during a 2 s grace period"
    );
    let status = hf.wait_exit(WAIT).await.expect("runner exits");
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}\n{}", hf.logs());
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "stopped after {took:?}, expected about the 2 s grace period\n{}",
        hf.logs()
    );
}
