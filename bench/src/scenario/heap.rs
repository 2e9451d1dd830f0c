//! Where the bytes of a held stream go: heaptrack under each of Holdfast's
//! processes while the load generator holds N streams and publishes M
//! items; then, per process, the heap at its peak divided by N, by
//! allocation site (the first frame in Holdfast's own code, and the library
//! frame it called). Runs the `profiling` build (release with line tables,
//! the system allocator: heaptrack sees malloc, not jemalloc):
//! `cargo build --profile profiling --no-default-features --bins` first.
//! Reports go to `target/heap/<process>.txt`.

use super::clients::{self, run as run_client};
use super::fixtures::{grip_origin, CHANNEL};
use super::progress;
use super::record::Record;
use super::subjects::{holdfast, Setup};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections to hold.
    #[arg(default_value_t = 5000)]
    connections: usize,
    /// Items to publish.
    #[arg(default_value_t = 5)]
    messages: usize,
    /// `http` (streams) or `ws` (WebSockets).
    #[arg(long, default_value = "http")]
    mode: String,
    /// The load generator's --settle-secs.
    #[arg(long, default_value_t = 1)]
    settle: u64,
    /// Also the heap's total over time (`<process>.massif`).
    #[arg(long)]
    massif: bool,
    /// The profiling build's folder.
    #[arg(long, default_value = "target/profiling")]
    bin_dir: PathBuf,
    /// More load-generator flags, passed as they are.
    #[arg(long, allow_hyphen_values = true, num_args = 1.., value_delimiter = ' ')]
    client: Vec<String>,
}

/// Holdfast's processes, as heaptrack runs them.
const HELPERS: [&str; 3] = ["connmgr", "proxy", "handler"];

/// Runs it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let bins = std::fs::canonicalize(&args.bin_dir)
        .map_err(|e| anyhow::anyhow!("{}: {e} (build it first: cargo build --profile profiling --no-default-features --bins)", args.bin_dir.display()))?;
    let out = PathBuf::from("target/heap");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let work = holdfast_tests::harness::scratch::scratch_dir("heap");
    wrappers(&bins, &work)?;
    let origin = grip_origin().await;
    let setup = Setup::route(format!("* {},over_http", origin.target("origin")));
    let mut hf = holdfast(&setup).bin_dir(work.join("bin")).run().await;
    let (path, ws) = if args.mode == "ws" {
        ("/ws", true)
    } else {
        ("/stream", false)
    };
    let mut client = clients::hold(hf.addr(), path, args.connections, args.messages);
    client.extend(argv![
        "--channel",
        CHANNEL,
        "--settle-secs",
        args.settle,
        "--publish",
        format!("http://127.0.0.1:{}", hf.publish_port),
        "--pids",
        hf.pid
    ]);
    if ws {
        client.push("--websocket".into());
    }
    client.extend(args.client.iter().cloned());
    progress("holding and publishing under heaptrack");
    let report = run_client(&client).await?;
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    // heaptrack's shell stands between the runner and each helper, and
    // does not pass the runner's SIGTERM on: the runner is stopped first
    // (so it restarts nothing), then the helpers themselves, by pid; then
    // heaptrack finishes writing (its interpreter and compressor are
    // among the runner's descendants, gone once their file is complete).
    let descendants = crate::procfs::tree(hf.pid);
    hf.signal(Signal::SIGTERM);
    for &pid in &descendants {
        let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0.split(|b| *b == 0).next().unwrap_or_default())
            .into_owned();
        if HELPERS
            .iter()
            .any(|h| argv0 == bins.join(format!("holdfast-{h}")).display().to_string())
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    anyhow::ensure!(
        hf.wait_exit(Duration::from_secs(120)).await.is_some(),
        "holdfast did not stop"
    );
    wait_gone(&descendants, Duration::from_secs(120)).await?;
    let mut record = Record::new(
        "heap",
        format!(
            "heaptrack, {} held {} (KiB per held connection at each process's heap peak)",
            args.connections, args.mode
        ),
        &[
            "process",
            "KiB per held connection",
            "largest sites (KiB each)",
        ],
    );
    for helper in HELPERS {
        let text = print(&work, helper, &out, args.massif).await?;
        let (total, sites) = parse(&text);
        let n = args.connections.max(1) as f64;
        let top: Vec<String> = sites
            .iter()
            .take(8)
            .filter(|(_, b)| *b / n >= 100.0)
            .map(|(s, b)| format!("{:.2} {s}", b / n / 1024.0))
            .collect();
        record.row(vec![
            helper.to_owned(),
            format!("{:.1}", total / n / 1024.0),
            top.join("; "),
        ]);
    }
    record.report("bench", report);
    record.finish()?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Waits until none of `pids` runs: heaptrack's writers are not this
/// process's children, so there is no exit to await but their /proc entry.
async fn wait_gone(pids: &[u32], limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while pids
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "heaptrack did not finish writing within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The runner finds its helpers beside itself: each is a wrapper that runs
/// the real one under heaptrack.
fn wrappers(bins: &Path, work: &Path) -> anyhow::Result<()> {
    let dir = work.join("bin");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(bins.join("holdfast"), dir.join("holdfast"))?;
    for helper in HELPERS {
        let script = format!(
            "#!/bin/sh\nexec heaptrack -o {}/{helper} {}/holdfast-{helper} \"$@\"\n",
            work.display(),
            bins.display()
        );
        let path = dir.join(format!("holdfast-{helper}"));
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    Ok(())
}

/// heaptrack_print's peaks report of one process (kept in `out`).
async fn print(work: &Path, helper: &str, out: &Path, massif: bool) -> anyhow::Result<String> {
    let data = work.join(format!("{helper}.zst"));
    let printed = tokio::process::Command::new("heaptrack_print")
        .arg("-f")
        .arg(&data)
        .args([
            "--print-peaks",
            "1",
            "--print-allocators",
            "0",
            "--print-temporary",
            "0",
        ])
        .args([
            "--print-leaks",
            "0",
            "--peak-limit",
            "40",
            "--sub-peak-limit",
            "10",
        ])
        .output()
        .await
        .map_err(|e| {
            anyhow::anyhow!("heaptrack_print ({e}): scripts/bench-env.sh installs heaptrack")
        })?;
    let text = String::from_utf8_lossy(&printed.stdout).into_owned();
    std::fs::write(out.join(format!("{helper}.txt")), &text)?;
    if massif {
        tokio::process::Command::new("heaptrack_print")
            .arg("-f")
            .arg(&data)
            .arg("--print-massif")
            .arg(out.join(format!("{helper}.massif")))
            .args(["--massif-threshold", "0.2"])
            .output()
            .await?;
    }
    Ok(text)
}

/// The peak heap (bytes), and bytes by site (the first frame of ours,
/// with the first library frame under it), largest first.
pub fn parse(text: &str) -> (f64, Vec<(String, f64)>) {
    let mut sites: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = 0.0;
    let (mut size, mut site, mut first_lib): (f64, Option<String>, Option<String>) =
        (0.0, None, None);
    let flush = |sites: &mut BTreeMap<String, f64>, site: &Option<String>, size: f64| {
        if let Some(site) = site {
            *sites.entry(site.clone()).or_insert(0.0) += size;
        }
    };
    for line in text.lines() {
        if let Some(bytes) = consumed(line) {
            flush(&mut sites, &site, size);
            (size, site, first_lib) = (bytes, None, None);
            continue;
        }
        if let Some(rest) = line.trim().strip_prefix("peak heap memory consumption: ") {
            total = amount(rest).unwrap_or(total);
        }
        if size > 0.0 && site.is_none() {
            if first_lib.is_none() {
                first_lib = library_frame(line);
            }
            if let Some(ours) = our_frame(line) {
                site = Some(match &first_lib {
                    Some(lib) => format!("{ours} <- {lib}"),
                    None => ours,
                });
            }
        }
    }
    flush(&mut sites, &site, size);
    let mut sites: Vec<(String, f64)> = sites.into_iter().collect();
    sites.sort_by(|a, b| b.1.total_cmp(&a.1));
    (total, sites)
}

/// `12.3K consumed over 10 calls from:` → bytes.
fn consumed(line: &str) -> Option<f64> {
    let (amount_text, rest) = line.trim().split_once(' ')?;
    rest.starts_with("consumed over")
        .then(|| amount(amount_text))?
}

/// `12.3K` (K, M, G: powers of 1000, as heaptrack prints) → 12300.
fn amount(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&text[..i], &text[i..i + 1]),
        None => (text, ""),
    };
    let scale = match unit {
        "" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// ` at connmgr/src/x.rs:12` → the path, for a frame in Holdfast's code.
fn our_frame(line: &str) -> Option<String> {
    let at = line.split(" at ").nth(1)?.split_whitespace().next()?;
    [
        "connmgr/src/",
        "proxy-core/src/",
        "handler/src/",
        "grip/src/",
        "runtime/src/",
        "protocol/src/",
    ]
    .iter()
    .find_map(|crate_dir| at.find(crate_dir).map(|i| at[i..].to_owned()))
}

/// ` at .../hyper-1.6.0/src/proto/h1/io.rs:91` → `hyper proto/h1/io.rs:91`.
fn library_frame(line: &str) -> Option<String> {
    let at = line.split(" at ").nth(1)?.split_whitespace().next()?;
    for lib in [
        "hyper",
        "tokio",
        "tokio-util",
        "h2",
        "bytes",
        "hashbrown",
        "tungstenite",
        "zmq",
    ] {
        let marker = format!("/{lib}-");
        if let Some(i) = at.find(&marker) {
            let rest = &at[i + marker.len()..];
            let (version, path) = rest.split_once("/src/")?;
            if version.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return Some(format!("{lib} {path}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heaptrack_peaks_by_site() {
        let text = "PEAK MEMORY CONSUMERS\n\
            5.00M consumed over 5000 calls from:\n\
            \x20 alloc::alloc::alloc\n\
            \x20   at /rustc/x/library/alloc/src/alloc.rs:1\n\
            \x20 hyper::proto::h1::io::Buffered::new\n\
            \x20   at /root/.cargo/registry/src/index/hyper-1.6.0/src/proto/h1/io.rs:91\n\
            \x20 holdfast_connmgr::lean::serve\n\
            \x20   at /work/holdfast/connmgr/src/lean.rs:80\n\
            1.5K consumed over 3 calls from:\n\
            \x20   at /work/holdfast/handler/src/engine/mod.rs:10\n\
            peak heap memory consumption: 8.20M\n";
        let (total, sites) = parse(text);
        assert!((total - 8.2e6).abs() < 1.0, "{total}");
        assert_eq!(
            sites,
            vec![
                (
                    "connmgr/src/lean.rs:80 <- hyper proto/h1/io.rs:91".to_owned(),
                    5e6
                ),
                ("handler/src/engine/mod.rs:10".to_owned(), 1500.0),
            ]
        );
        assert_eq!(amount("12"), Some(12.0));
        assert_eq!(amount("1.5X"), None);
    }
}
