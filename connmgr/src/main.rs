use clap::Parser;
use holdfast_connmgr::{run, Config};
use holdfast_protocol::rt::{init_tracing, shutdown_on_signals, Shutdown};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log_level, config.verbose);
    let shutdown = Shutdown::new();
    shutdown_on_signals(shutdown.token.clone())?;
    if let Err(err) = run(config, shutdown).await {
        tracing::error!("{err:#}");
        std::process::exit(1);
    }
    Ok(())
}
