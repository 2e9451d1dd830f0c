//! What `/proc` says of processes: their resident memory and CPU time,
//! with their descendants, summed per program name.

use std::collections::BTreeMap;

/// A process's resident memory, KiB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// `pid` and its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat =
                    std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !all.contains(&child) {
                    all.push(child);
                }
            }
        }
        i += 1;
    }
    all
}

/// The resident memory of `pids` and their descendants, KiB.
pub fn total_rss(pids: &[u32]) -> u64 {
    pids.iter().flat_map(|p| tree(*p)).map(rss_kb).sum()
}

/// `measure` of `pids` and their children, summed per process name
/// (`holdfast-connmgr`, `holdfast-handler`, `condure`, ...).
pub fn by_process(pids: &[u32], measure: impl Fn(u32) -> u64) -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    for pid in pids.iter().flat_map(|p| tree(*p)) {
        // argv[0]'s file name: `comm` is cut at 15 bytes.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        let name = argv0.rsplit('/').next().unwrap_or_default().to_string();
        *by_name.entry(name).or_insert(0) += measure(pid);
    }
    by_name
}

/// RSS KiB per process name: where the memory is.
pub fn rss_by_process(pids: &[u32]) -> BTreeMap<String, u64> {
    by_process(pids, rss_kb)
}

/// CPU time (user + system, clock ticks) per process name.
pub fn cpu_ticks_by_process(pids: &[u32]) -> BTreeMap<String, u64> {
    by_process(pids, |pid| cpu_ticks(&pid.to_string()))
}

/// utime + stime of a process (`self` for this one), in clock ticks.
pub fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: state is the 3rd field, utime the
    // 14th, stime the 15th.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let mut fields = rest.split_whitespace().skip(11);
    let mut tick = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick() + tick()
}

/// Per process name (and this benchmark's own process, `holdfast-bench`),
/// microseconds of CPU per delivery between two samples: where a
/// delivery's work is done.
pub fn cpu_per_delivery(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    deliveries: usize,
) -> serde_json::Value {
    // Linux reports these in USER_HZ, 100 per second on every architecture.
    const TICK_US: f64 = 10_000.0;
    let mut out = serde_json::Map::new();
    for (name, ticks) in after {
        let spent = ticks.saturating_sub(before.get(name).copied().unwrap_or(0));
        let per = spent as f64 * TICK_US / deliveries.max(1) as f64;
        out.insert(
            name.clone(),
            serde_json::json!((per * 100.0).round() / 100.0),
        );
    }
    serde_json::Value::Object(out)
}

/// Per process name, KiB per connection between two samples.
pub fn per_connection(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    connections: usize,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, kb) in after {
        let grown = kb.saturating_sub(before.get(name).copied().unwrap_or(0));
        let per = grown as f64 / connections.max(1) as f64;
        out.insert(name.clone(), serde_json::json!((per * 10.0).round() / 10.0));
    }
    serde_json::Value::Object(out)
}
