//! One scenario run as a JSON record: what ran (the command, the commit,
//! the machine), its table (a title, a header and rows of cells, as the
//! scenario decides them) and notes, and every raw report the table comes
//! from, for later plots and checks. Written to `target/bench/` and
//! printed as markdown.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The record's format; bumped on a change readers must know of.
pub const SCHEMA: &str = "holdfast-bench/1";

/// A scenario run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    /// [`SCHEMA`].
    pub schema: String,
    /// The scenario's name.
    pub scenario: String,
    /// The command line that ran it.
    pub command: String,
    /// `git describe --always --dirty` of the tree that ran it.
    pub commit: String,
    /// When (UTC, RFC 3339).
    pub date: String,
    /// CPUs online.
    pub cpus: usize,
    /// What the table shows.
    pub title: String,
    /// The table's header.
    pub header: Vec<String>,
    /// Its rows.
    pub rows: Vec<Vec<String>>,
    /// Lines under the table (ratios, remarks).
    pub notes: Vec<String>,
    /// The raw reports, by name.
    pub reports: Vec<(String, serde_json::Value)>,
}

impl Record {
    /// A record of `scenario`, its table headed by `header`.
    pub fn new(scenario: &str, title: String, header: &[&str]) -> Record {
        Record {
            schema: SCHEMA.to_owned(),
            scenario: scenario.to_owned(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            commit: commit(),
            date: now_utc(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            title,
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
            reports: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Keeps a raw report.
    pub fn report(&mut self, name: &str, report: serde_json::Value) {
        self.reports.push((name.to_owned(), report));
    }

    /// The table, as markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!("{}\n", self.title);
        out.push_str(&format!("| {} |\n", self.header.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        for note in &self.notes {
            out.push_str(&format!("{note}\n"));
        }
        out
    }

    /// Writes the record to `target/bench/` and prints its table.
    pub fn finish(&self) -> anyhow::Result<PathBuf> {
        let dir = PathBuf::from("target/bench");
        std::fs::create_dir_all(&dir)?;
        let stamp: String = self.date.chars().filter(char::is_ascii_digit).collect();
        let path = dir.join(format!("{}-{stamp}.json", self.scenario));
        std::fs::write(&path, serde_json::to_string_pretty(self)?)?;
        println!("\n{}", self.markdown());
        eprintln!("record: {}", path.display());
        Ok(path)
    }
}

/// The tree's commit, `unknown` outside a git checkout.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The time now, UTC, as `2026-12-07T13:45:00Z`.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 (days from the civil calendar).
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_650_000), "2026-12-07T13:26:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_record_renders_as_a_markdown_table_and_reads_back() {
        let mut record = Record::new("proxy", "wrk, 3 runs".into(), &["path", "req/s"]);
        record.row(vec!["Holdfast".into(), "13,692".into()]);
        record.notes.push("Holdfast / Pushpin = 4.40".into());
        assert_eq!(
            record.markdown(),
            "wrk, 3 runs\n| path | req/s |\n|---|---|\n| Holdfast | 13,692 |\nHoldfast / Pushpin = 4.40\n"
        );
        let text = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back.markdown(), record.markdown());
        assert_eq!(back.schema, SCHEMA);
    }
}
