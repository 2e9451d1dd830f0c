use clap::Parser;
use holdfast_connmgr::{run, Config};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    let daemon = config.daemon.clone();
    holdfast_runtime::daemon_main(&daemon, |shutdown| run(config, shutdown)).await;
}
