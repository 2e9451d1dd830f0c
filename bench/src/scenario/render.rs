//! `render`: prints the tables of records written before (the markdown
//! BENCHMARKS.md takes), in the order given.

use super::record::Record;
use std::path::PathBuf;

/// Records to print.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record files (`target/bench/*.json`).
    #[arg(required = true)]
    records: Vec<PathBuf>,
}

/// Prints each record's table, with what ran it.
pub fn run(args: Args) -> anyhow::Result<()> {
    for path in &args.records {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let record: Record = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a benchmark record: {e}", path.display()))?;
        println!(
            "`{}` (commit {}, {}, {} CPUs)\n\n{}",
            record.command,
            record.commit,
            record.date,
            record.cpus,
            record.markdown()
        );
    }
    Ok(())
}
