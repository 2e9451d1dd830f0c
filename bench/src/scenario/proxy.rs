//! Plain proxying: wrk against nginx directly (the ceiling), through
//! Holdfast and through Pushpin 1.36 in front of it, all up at once, runs
//! alternating (so the machine's drift is shared), the median of each
//! reported with the memory of each proxy's whole process tree after.

use super::clients::{wrk, WrkRun};
use super::fixtures::grip_origin;
use super::record::Record;
use super::subjects::{parse_list, start, Setup, Subject};
use super::{median, progress};
use crate::procfs::total_rss;

/// Settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per run.
    #[arg(default_value_t = 10)]
    seconds: u64,
    /// Runs of each path.
    #[arg(default_value_t = 3)]
    runs: usize,
    /// wrk's connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// wrk's threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The proxies in front of nginx.
    #[arg(long, default_value = "holdfast,pushpin-default", value_parser = parse_list)]
    subjects: std::vec::Vec<Subject>,
}

/// Runs it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let origin = grip_origin().await;
    let setup = Setup::route(format!("* {},over_http", origin.target("origin")));
    let mut paths = vec![(
        "nginx origin directly".to_owned(),
        origin.target("origin"),
        None,
    )];
    let mut running = Vec::new();
    for subject in &args.subjects {
        progress(&format!("starting {}", subject.name()));
        let proxy = start(subject, &setup).await;
        paths.push((
            format!("{} -> nginx", subject.name()),
            proxy.addr(),
            Some(proxy.pid()),
        ));
        running.push(proxy);
    }
    let url = |addr: &str| format!("http://{addr}/");
    for (_, addr, _) in &paths {
        wrk(&url(addr), args.threads, args.connections, 2).await?;
    }
    let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); paths.len()];
    for round in 1..=args.runs {
        progress(&format!("round {round} of {}", args.runs));
        for (i, (_, addr, _)) in paths.iter().enumerate() {
            runs[i].push(wrk(&url(addr), args.threads, args.connections, args.seconds).await?);
        }
    }
    let mut record = Record::new(
        "proxy",
        format!(
            "wrk -t{} -c{} -d{}s, {} alternating runs, median requests/s",
            args.threads, args.connections, args.seconds, args.runs
        ),
        &[
            "path",
            "req/s (median)",
            "runs",
            "non-2xx",
            "RSS after (all processes)",
        ],
    );
    let mut medians = Vec::new();
    for ((name, _, pid), runs) in paths.iter().zip(&runs) {
        let rates: Vec<f64> = runs.iter().map(|r| r.rps).collect();
        let m = median(&rates);
        medians.push(m);
        let rss = pid.map_or(String::new(), |p| format!("{} KiB", total_rss(&[p])));
        record.row(vec![
            name.clone(),
            format!("{m:.0}"),
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            runs.iter().map(|r| r.non_2xx).sum::<u64>().to_string(),
            rss,
        ]);
        record.report(name, serde_json::to_value(runs)?);
    }
    for (i, subject) in args.subjects.iter().enumerate() {
        let ratio = medians[i + 1] / medians[0].max(1e-9);
        record
            .notes
            .push(format!("{} / nginx directly = {ratio:.2}", subject.name()));
    }
    for (i, subject) in args.subjects.iter().enumerate().skip(1) {
        let ratio = medians[1] / medians[i + 1].max(1e-9);
        record.notes.push(format!(
            "{} / {} = {ratio:.2}",
            args.subjects[0].name(),
            subject.name()
        ));
    }
    record.finish()?;
    drop(running);
    Ok(())
}
