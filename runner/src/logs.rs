//! One output for everything: the runner's own log lines and every line its
//! children print, each prefixed with the process name (`[proxy] ...`), or,
//! with `--log-format json`, as JSON objects with a `process` field,
//! written to stdout or to `--logfile`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Shared, line-atomic log output.
#[derive(Clone)]
pub struct LogSink {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    json: bool,
}

impl LogSink {
    /// Output to `path` (appended), or stdout; JSON lines when `json`.
    pub fn open(path: Option<&Path>, json: bool) -> io::Result<LogSink> {
        let out: Box<dyn Write + Send> = match path {
            Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            None => Box::new(io::stdout()),
        };
        Ok(LogSink {
            out: Arc::new(Mutex::new(out)),
            json,
        })
    }

    /// Writes one line from `process`.
    pub fn line(&self, process: &str, line: &str) {
        let line = if self.json {
            json_line(process, line)
        } else {
            format!("[{process}] {line}")
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
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

/// A child's JSON line with `process` added; anything else (a panic
/// message, a library printing text) becomes `{"process", "message"}`.
fn json_line(process: &str, line: &str) -> String {
    let mut value = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            let mut map = serde_json::Map::new();
            map.insert("message".into(), line.into());
            map
        }
    };
    value.insert("process".into(), process.into());
    serde_json::Value::Object(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::json_line;

    #[test]
    fn json_lines_name_their_process() {
        let line = json_line("proxy", r#"{"level":"INFO","fields":{"message":"ready"}}"#);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["process"].as_str(), v["level"].as_str()),
            (Some("proxy"), Some("INFO"))
        );
        let v: serde_json::Value =
            serde_json::from_str(&json_line("handler", "thread panicked")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"process": "handler", "message": "thread panicked"})
        );
    }
}
