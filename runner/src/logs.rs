//! One output for everything: the runner's own log lines and every line its
//! children print, each prefixed with the process name (`[proxy] ...`),
//! written to stdout or to `--logfile`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Shared, line-atomic log output.
#[derive(Clone)]
pub struct LogSink {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl LogSink {
    /// Output to `path` (appended), or stdout.
    pub fn open(path: Option<&Path>) -> io::Result<LogSink> {
        let out: Box<dyn Write + Send> = match path {
            Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            None => Box::new(io::stdout()),
        };
        Ok(LogSink {
            out: Arc::new(Mutex::new(out)),
        })
    }

    /// Writes one line from `process`.
    pub fn line(&self, process: &str, line: &str) {
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "[{process}] {line}");
            let _ = out.flush();
        }
    }

    /// A writer for the runner's own tracing output.
    pub fn runner_writer(&self) -> RunnerWriter {
        RunnerWriter { sink: self.clone() }
    }
}

/// Prefixes each formatted tracing event with `[runner]`.
pub struct RunnerWriter {
    sink: LogSink,
}

impl Write for RunnerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        for line in text.lines() {
            self.sink.line("runner", line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
