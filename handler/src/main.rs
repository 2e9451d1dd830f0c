use clap::Parser;
use holdfast_handler::{run, Config};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    let (level, verbose) = (config.log_level, config.verbose);
    holdfast_protocol::rt::daemon_main(level, verbose, |shutdown| run(config, shutdown)).await;
}
