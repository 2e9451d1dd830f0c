//! The load generator: holds stream connections (HTTP streams or GRIP
//! WebSockets) on a proxy, publishes, and measures delivery. Its modes:
//! sequential fan-out (the default), a storm or soak at a publish rate
//! ([`storm`]), listening only (another process publishes), and WebSocket
//! echo ([`ws_echo`]). Reports are JSON on stdout.
//!
//! - [`connection`]: one held connection, and the item markers it finds.
//! - [`run`]: connecting them all, and the fan-out and listen-only modes.
//! - [`storm`]: publishing at a rate without waiting for deliveries.
//! - [`publish`]: publish requests, over HTTP or ZeroMQ.
//! - [`ws_echo`]: WebSocket echo through a proxy.

pub mod connection;
pub mod publish;
pub mod run;
pub mod storm;
pub mod ws_echo;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The load generator's command line (`holdfast-bench` without a scenario).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Proxy address (`host:port`); several, comma-separated, for several
    /// instances on one bus: connections go to them in turn.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7999")]
    pub target: Vec<SocketAddr>,
    /// Path whose origin answers `Grip-Hold: stream` on `--channel`.
    #[arg(long, default_value = "/stream")]
    pub path: String,
    /// Connections to hold.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Items to publish.
    #[arg(long, default_value_t = 10)]
    pub messages: usize,
    /// Channel the origin subscribes connections to.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Publish API base (`http://127.0.0.1:5561`); several, comma-separated:
    /// item k goes through the (k mod n)-th.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:5561")]
    pub publish: Vec<String>,
    /// Local addresses to connect from, round robin (spreads ports over
    /// several 127.0.0.x for very many connections).
    #[arg(long, value_delimiter = ',')]
    pub sources: Vec<IpAddr>,
    /// Processes whose RSS (with their children) is reported.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Concurrent connection attempts.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Seconds to wait for every delivery of one item.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Hold WebSocket connections (to a GRIP WebSocket origin that
    /// subscribes them to the channel) and publish `ws-message` items,
    /// instead of HTTP streams and `http-stream` items.
    #[arg(long)]
    pub websocket: bool,
    /// Milliseconds between the end of one item's deliveries and the next
    /// publish (0: at once).
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
    /// Publish this many items per second (fractions allowed) without
    /// waiting for deliveries (a storm, or a soak when slow and long); 0:
    /// one after another, each once delivered.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Only hold connections and count the items they receive (another
    /// process publishes): for spreading very many connections over
    /// several client processes. Prints `ready` on stderr once connected,
    /// reports when every connection has the last of `--messages` items.
    #[arg(long)]
    pub listen_only: bool,
    /// While publishing a storm, sample the RSS of `--pids` this often.
    #[arg(long, default_value_t = 10)]
    pub sample_secs: u64,
    /// RSS growth is measured from the first sample after this many
    /// seconds of publishing (warm-up).
    #[arg(long, default_value_t = 60)]
    pub warmup_secs: u64,
    /// Items name `purge: [<channel>]` (Holdfast's purge + publish).
    #[arg(long)]
    pub purge: bool,
    /// WebSocket echo client: `--connections` WebSockets to `--path`, each
    /// sending `--messages` messages of `--size` bytes, `--in-flight` at a
    /// time; reports echoes per second and round trips.
    #[arg(long)]
    pub ws_echo: bool,
    /// Run the WebSocket echo origin on this address, until stopped.
    #[arg(long)]
    pub serve_echo: Option<SocketAddr>,
    /// Publish to this ZeroMQ address instead (an XPUB connected to a
    /// broker's input, such as `holdfast broker --in`): `[channel, J+item]`.
    #[arg(long)]
    pub publish_zmq: Option<String>,
    /// With `--publish-zmq`: subscriptions to the channel to wait for before
    /// publishing (one per instance behind the broker).
    #[arg(long, default_value_t = 1)]
    pub zmq_subscribers: usize,
    /// Seconds to let the proxy settle before measuring RSS again: once
    /// every connection is held (memory per held connection, settled), and
    /// after the last item, once every connection is closed (memory given
    /// back).
    #[arg(long, default_value_t = 5)]
    pub settle_secs: u64,
    /// Print the RSS KiB of `--pids` and their children per program name
    /// as JSON, and exit (for scripts that drive several client processes).
    #[arg(long)]
    pub rss_only: bool,
    /// Bytes per echo message.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Echo messages sent and not yet answered, per connection.
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
}

/// What every connection task shares.
pub(crate) struct Shared {
    /// When item k was published.
    pub(crate) published: Mutex<Vec<Option<Instant>>>,
    /// Latency (µs) per item per connection.
    pub(crate) latencies: Mutex<Vec<Vec<u64>>>,
    /// Connections that got their initial response.
    pub(crate) ready: AtomicUsize,
    /// Deliveries counted per item.
    pub(crate) delivered: Vec<AtomicUsize>,
    /// Storms: per connection, items received and when the last one came.
    pub(crate) storm: Mutex<Vec<(usize, Option<Instant>)>>,
    /// Storms: per item, deliveries and the first and last arrival in
    /// microseconds of wall-clock time, so reports of several processes on
    /// one machine can be merged against the publisher's times.
    pub(crate) arrivals: Mutex<Vec<Arrivals>>,
    pub(crate) notify: Notify,
}

/// One item's deliveries seen by this process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Arrivals {
    pub(crate) count: usize,
    pub(crate) first_us: u64,
    pub(crate) last_us: u64,
}

/// Microseconds since the Unix epoch (comparable between processes).
pub(crate) fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Waits until `done` holds (woken by the connections), or `deadline`;
/// whether it holds.
pub(crate) async fn wait_until(
    shared: &Shared,
    deadline: Instant,
    done: impl Fn() -> bool,
) -> bool {
    loop {
        let notified = shared.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return done();
        }
    }
}
