use anyhow::Context;
use clap::Parser;
use holdfast_runner::config::{load, Overrides};
use holdfast_runner::helpers::{self, Helpers};
use holdfast_runner::logs::LogSink;
use holdfast_runner::{check_ipc_paths, clean_rundir, needed_helpers, services, supervisor};
use holdfast_runtime::{reload_on_sighup, shutdown_on_signals};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Holdfast: a realtime reverse proxy (Pushpin-compatible).
#[derive(Debug, Parser)]
#[command(name = "holdfast", version, about)]
struct Cli {
    /// Config file in pushpin.conf format (every key has a built-in default).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log file (default: standard output).
    #[arg(long)]
    logfile: Option<PathBuf>,
    /// Log level: 0 error .. 4 trace, or per process: `2,proxy:3`.
    #[arg(long = "loglevel")]
    log_level: Option<String>,
    /// Debug logging.
    #[arg(long)]
    verbose: bool,
    /// Client HTTP port, `[addr:]port` (replaces http_port).
    #[arg(long)]
    port: Option<String>,
    /// Instance number N: ports move by 10 N, socket names get an N- prefix.
    #[arg(long)]
    id: Option<u16>,
    /// A route line (repeatable); replaces the routes file.
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Merge every process's output into one stream (always on; accepted for
    /// compatibility with Pushpin's runner).
    #[arg(short = 'm', long = "merge-output")]
    merge_output: bool,
    /// Log lines as text (`[process] ...`) or as JSON objects with a
    /// `process` field.
    #[arg(long = "log-format", default_value = "text")]
    log_format: holdfast_runtime::LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Forward publishes to several Holdfast instances (ZeroMQ XSUB/XPUB):
    /// publishers connect PUB sockets to --in, each instance's handler
    /// connects its SUB input to --out (push_in_sub_connect=true).
    Broker {
        /// Where publishers connect (XSUB, bound).
        #[arg(long = "in", default_value = "tcp://127.0.0.1:5570")]
        input: String,
        /// Where handlers connect (XPUB, bound).
        #[arg(long = "out", default_value = "tcp://127.0.0.1:5571")]
        output: String,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Some(Command::Broker { input, output }) = &cli.command {
        holdfast_runtime::init_tracing(2, cli.verbose, cli.log_format);
        let (input, output) = (input.clone(), output.clone());
        let result =
            tokio::task::spawn_blocking(move || holdfast_runner::broker::run(&input, &output))
                .await;
        if let Err(err) = result.map_err(anyhow::Error::from).and_then(|r| r) {
            eprintln!("holdfast broker: {err:#}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(err) = run(cli).await {
        eprintln!("holdfast: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = Overrides {
        config: cli.config.clone(),
        routes: cli.routes.clone(),
        port: cli.port.clone(),
        id: cli.id,
        log_level: cli.log_level.clone(),
        verbose: cli.verbose,
    };
    let (settings, warnings) = load(&overrides)?;
    let json = cli.log_format == holdfast_runtime::LogFormat::Json;
    let sink =
        LogSink::open(cli.logfile.as_deref(), json).with_context(|| "cannot open the log file")?;
    let level = match settings.log_levels.for_process("runner") {
        0 => "error",
        1 => "warn",
        2 => "info",
        3 => "debug",
        _ => "trace",
    };
    let writer_sink = sink.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(format!(
            "warn,holdfast={level},holdfast_runner={level},{}",
            holdfast_runtime::lifecycle_directive()
        )))
        .with_writer(move || writer_sink.runner_writer())
        .with_target(false)
        .with_ansi(false)
        .log_internal_errors(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    if holdfast_runner::condure(&settings) {
        tracing::info!(
            "connmgr_bin: clients are served by condure, which has its own limits: client_max_body_size, client_idle_timeout and client_max_message_size apply to holdfast-connmgr only"
        );
    }
    check_ipc_paths(&settings).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&settings.rundir)
        .with_context(|| format!("cannot create rundir {}", settings.rundir.display()))?;
    let runner_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from));
    let places = helpers::places(
        runner_dir.as_deref(),
        &settings.libexec_dir,
        std::env::var_os("PATH").as_deref(),
    );
    let helpers =
        Helpers::locate(&needed_helpers(&settings), &places).map_err(anyhow::Error::msg)?;
    let token = CancellationToken::new();
    shutdown_on_signals(token.clone())?;
    let reloads = reload_on_sighup()?;
    let addrs: Vec<String> = settings
        .http_addrs
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(target: holdfast_runtime::LIFECYCLE, phase = "starting", rundir = %settings.rundir.display(), "starting holdfast");
    let mut services = services(&settings, &helpers);
    if json {
        for service in &mut services {
            if !service.announces_ready {
                // condure has no such flag.
                continue;
            }
            service
                .args
                .extend(["--log-format".to_owned(), "json".to_owned()]);
        }
    }
    let result = supervisor::supervise(
        services,
        sink,
        token,
        reloads,
        format!("holdfast ready: client HTTP on {}", addrs.join(", ")),
    )
    .await;
    clean_rundir(&settings);
    result.map_err(anyhow::Error::msg)
}
