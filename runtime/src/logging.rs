//! One log format for every process: a line per event on stderr, which the
//! runner prefixes with the process name when it merges children's output.

use tracing_subscriber::EnvFilter;

/// The target of lifecycle lines (`phase="starting|ready|stopping|stopped"`):
/// logged at every level, as the runner (and tests, and operators' tools)
/// wait on them whatever `log_level` says, as nginx's notices are.
pub const LIFECYCLE: &str = "holdfast_lifecycle";

/// The filter directives that keep lifecycle lines at every level.
pub fn lifecycle_directive() -> String {
    format!("{LIFECYCLE}=info")
}

/// Installs the global subscriber.
///
/// `level` is Pushpin's numeric log level (0 error, 1 warn, 2 info, 3 debug,
/// 4+ trace); `verbose` forces debug. `RUST_LOG` overrides both.
pub fn init_tracing(level: u8, verbose: bool, format: super::LogFormat) {
    let level = if verbose { level.max(3) } else { level };
    let name = match level {
        0 => "error",
        1 => "warn",
        2 => "info",
        3 => "debug",
        _ => "trace",
    };
    // Dependencies stay at warn unless tracing them was asked for.
    let default = if level >= 4 {
        name.to_owned()
    } else {
        format!("warn,holdfast={name},holdfast_protocol={name},holdfast_connmgr={name},holdfast_proxy={name},holdfast_handler={name},holdfast_runner={name},{}", lifecycle_directive())
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        // When the runner is gone, stderr is a broken pipe; reporting that
        // with eprintln! would panic the logging task (often the signal task,
        // which then ignores SIGTERM). Lose the line instead.
        .log_internal_errors(false);
    let _ = match format {
        super::LogFormat::Text => builder.try_init(),
        super::LogFormat::Json => builder.json().try_init(),
    };
}
