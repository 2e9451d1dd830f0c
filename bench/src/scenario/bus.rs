//! Scale-out: publish→delivery latency to N held streams spread over
//! three Holdfast instances, over the ZeroMQ broker, over NATS (core) and
//! over NATS with JetStream and history, beside one instance holding them
//! all. The load generator holds the streams round robin over the
//! instances and publishes M items one after another (over HTTP through
//! the instances in turn; to the broker's input with ZeroMQ for the
//! broker row). A 3-node nats-server cluster runs for the NATS rows.

use super::clients::run as run_client;
use super::fixtures::{grip_origin, CHANNEL};
use super::progress;
use super::record::Record;
use super::subjects::{holdfast, Setup};
use holdfast_tests::harness::binaries::binary;
use holdfast_tests::harness::holdfast::{spawn_logged, Holdfast};
use holdfast_tests::{free_port, NatsCluster};
use std::time::Duration;

/// Settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections, over the instances.
    #[arg(default_value_t = 3000)]
    connections: usize,
    /// Items to publish.
    #[arg(default_value_t = 50)]
    messages: usize,
    /// The setups: single, broker, nats, nats-jetstream.
    #[arg(
        long,
        default_value = "single,broker,nats,nats-jetstream",
        value_delimiter = ','
    )]
    setups: Vec<String>,
}

/// Runs it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let origin = grip_origin().await;
    let route = format!("* {}", origin.target("origin"));
    let mut record = Record::new(
        "bus",
        format!(
            "holdfast-bench --connections {} --messages {} over the instances (latencies in ms)",
            args.connections, args.messages
        ),
        &[
            "setup",
            "instances",
            "connected",
            "first p50",
            "first p99",
            "last p50",
            "last p99",
            "deliveries/s",
        ],
    );
    for setup in &args.setups {
        progress(setup);
        let report = match setup.as_str() {
            "single" => {
                let one = instance(&Setup::route(&route)).await;
                measure(&args, &[one], &[]).await?
            }
            "broker" => broker(&args, &route).await?,
            "nats" | "nats-jetstream" => {
                let nats = NatsCluster::start(3).await;
                let mut s = Setup::route(&route).set("handler", "bus_url", nats.urls());
                if setup == "nats-jetstream" {
                    s = s.set("handler", "history_size", 100).set(
                        "handler",
                        "bus_history_replicas",
                        3,
                    );
                }
                let mut instances = Vec::new();
                for _ in 0..3 {
                    instances.push(on_the_bus(&s).await?);
                }
                measure(&args, &instances, &[]).await?
            }
            other => anyhow::bail!("{other}: setups are single, broker, nats and nats-jetstream"),
        };
        let (first, last) = (
            &report["latency_first_subscriber"],
            &report["latency_last_subscriber"],
        );
        let ms = |v: &serde_json::Value| format!("{:.1}", v.as_f64().unwrap_or(f64::NAN));
        record.row(vec![
            setup.clone(),
            report["target"].as_array().map_or(0, Vec::len).to_string(),
            format!("{}/{}", report["connected"], report["connections"]),
            ms(&first["p50_ms"]),
            ms(&first["p99_ms"]),
            ms(&last["p50_ms"]),
            ms(&last["p99_ms"]),
            format!(
                "{:.0}",
                report["deliveries_per_sec"].as_f64().unwrap_or(0.0)
            ),
        ]);
        record.report(setup, report);
    }
    record.finish()?;
    Ok(())
}

/// One instance for `setup`.
async fn instance(setup: &Setup) -> Holdfast {
    holdfast(setup).run().await
}

/// An instance on a bus: ready once its bus is connected (ready does not
/// wait for it), which its handler says at info.
async fn on_the_bus(setup: &Setup) -> anyhow::Result<Holdfast> {
    let hf = holdfast(setup)
        .set("runner", "log_level", "1,handler:2")
        .run()
        .await;
    anyhow::ensure!(
        hf.wait_log("bus (NATS) connected", Duration::from_secs(30))
            .await,
        "the bus did not connect:\n{}",
        hf.logs()
    );
    Ok(hf)
}

/// Three instances behind `holdfast broker`; items go to its input.
async fn broker(args: &Args, route: &str) -> anyhow::Result<serde_json::Value> {
    let (input, output) = (free_port(), free_port());
    let mut command = tokio::process::Command::new(binary("holdfast"));
    command
        .arg("broker")
        .args(["--in", &format!("tcp://127.0.0.1:{input}")])
        .args(["--out", &format!("tcp://127.0.0.1:{output}")]);
    let (_broker, logs, notify) = spawn_logged(&mut command, "holdfast broker");
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if logs
                .lock()
                .map(|l| l.iter().any(|l| l.contains("broker ready")))
                .unwrap_or(false)
            {
                return;
            }
            notified.await;
        }
    })
    .await;
    anyhow::ensure!(ready.is_ok(), "the broker did not start");
    let setup = Setup::route(route)
        .set(
            "handler",
            "push_in_sub_specs",
            format!("tcp://127.0.0.1:{output}"),
        )
        .set("handler", "push_in_sub_connect", "true");
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(&setup).await);
    }
    let zmq = argv![
        "--publish-zmq",
        format!("tcp://127.0.0.1:{input}"),
        "--zmq-subscribers",
        3
    ];
    measure(args, &instances, &zmq).await
}

/// Holds the connections over `instances`, publishes through them in turn.
async fn measure(
    args: &Args,
    instances: &[Holdfast],
    more: &[String],
) -> anyhow::Result<serde_json::Value> {
    let join =
        |f: &dyn Fn(&Holdfast) -> String| instances.iter().map(f).collect::<Vec<_>>().join(",");
    let mut client = argv![
        "--target",
        join(&|h| h.addr()),
        "--path",
        "/stream",
        "--channel",
        CHANNEL,
        "--connections",
        args.connections,
        "--messages",
        args.messages,
        "--publish",
        join(&|h| format!("http://127.0.0.1:{}", h.publish_port)),
        "--pids",
        join(&|h| h.pid.to_string())
    ];
    client.extend(more.iter().cloned());
    run_client(&client).await
}
