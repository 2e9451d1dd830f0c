//! The NATS bus between Holdfast instances (`[handler] bus_url`).
//!
//! With a bus, what any instance's publish inputs accept (HTTP, ZeroMQ PULL,
//! the command socket) is published on NATS, one message per item on the
//! channel's [`subject`], and only a confirmed publish is answered 200: the
//! server has it once the flush that follows returns. Each instance
//! subscribes to the subjects of the channels it has local subscribers
//! for, following the engine's subscription changes (the same ones the
//! ZeroMQ SUB input follows), and hands what arrives to its engine: every
//! subscriber on every instance gets each item once. Items published
//! straight to NATS by applications are read the same way (JSON, or
//! Pushpin's `J`/`T` framing).
//!
//! Two modes:
//! - **Core NATS** (`history_size` = 0): delivery is at most once. A
//!   subscription whose buffer overflows loses messages (NATS calls it a
//!   slow consumer); the buffer holds [`SUBSCRIPTION_CAPACITY`] messages
//!   while the engine catches up, and each loss is logged and counted
//!   (`holdfast_bus_slow_consumer_total`), never silent. What is published
//!   while an instance reconnects is lost for it.
//! - **JetStream** (`history_size` > 0): items are stored in a stream
//!   (subjects `<prefix>.ch.>`, `history_size` per channel, `history_ttl`,
//!   `bus_history_replicas`) and a publish is answered 200 only once the
//!   stream acknowledged it; `Nats-Msg-Id` (channel and item id) makes a
//!   retried publish count once. Each subscribed channel is read through an
//!   ordered consumer, which resumes after the last message it delivered
//!   when a server goes away: nothing is lost or repeated across a
//!   reconnection.

pub mod subject;

use crate::engine::Input;
use crate::error::{ConfigError, ItemError};
use crate::history::{Lookup, Since};
use crate::metrics::Metrics;
use async_nats::{jetstream, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures_util::StreamExt;
use holdfast_protocol::publish::{encode_item_frame, parse_item_frame, Item};
use holdfast_protocol::zmq::Multipart;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages a channel's subscription holds while the engine is busy.
pub const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// How long a publish waits for the server's confirmation.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach the bus.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Comma-separated server URLs (`nats://host:4222`, `tls://...`;
    /// `user:password@` in a URL is used).
    pub url: String,
    /// First subject token (`holdfast`: subjects are `holdfast.ch.<channel>`).
    pub subject_prefix: String,
    /// A `.creds` file (JWT + NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A token.
    pub token: Option<String>,
    /// CA certificates (PEM) to trust for `tls://` servers.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that ask for one.
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's key.
    pub tls_key_file: Option<PathBuf>,
    /// The connection's name, as NATS monitoring shows it.
    pub name: String,
    /// JetStream, when channel history is on.
    pub stream: Option<StreamSettings>,
}

/// The JetStream stream that keeps every channel's items.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Items kept per channel (subject).
    pub per_channel: i64,
    /// Longest an item is kept.
    pub ttl: Duration,
    /// Servers holding a copy (1, 3 or 5 in a cluster).
    pub replicas: usize,
}

/// The stream's name for a subject prefix: `HOLDFAST` for `holdfast`.
pub fn stream_name(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The stream, created (or found) once the servers answer.
struct JetStream {
    context: jetstream::Context,
    config: jetstream::stream::Config,
    stream: tokio::sync::Mutex<Option<jetstream::stream::Stream>>,
    /// Told once the stream is set up (`/health`).
    metrics: Arc<Metrics>,
}

impl JetStream {
    async fn stream(&self) -> Result<jetstream::stream::Stream, BusError> {
        let mut slot = self.stream.lock().await;
        if let Some(stream) = &*slot {
            return Ok(stream.clone());
        }
        let name = &self.config.name;
        let set_up = async {
            // Created, or brought to this configuration (a changed
            // history_size, history_ttl or replica count applies); a change
            // the servers refuse (storage) leaves the stream as it is.
            if let Err(err) = self
                .context
                .create_or_update_stream(self.config.clone())
                .await
            {
                tracing::error!(stream = %name, "bus (NATS): stream not created or updated: {err}; using it as it is");
            }
            self.context.get_stream(name.as_str()).await
        };
        let stream = tokio::time::timeout(CONFIRM_TIMEOUT, set_up)
            .await
            .map_err(|_| BusError::Unconfirmed)?
            .map_err(|e| BusError::Refused(format!("stream {name}: {e}")))?;
        tracing::info!(stream = %self.config.name, "bus (NATS): JetStream stream ready");
        self.metrics.bus_stream_ready.store(true, Relaxed);
        *slot = Some(stream.clone());
        Ok(stream)
    }
}

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Disconnected: nothing was sent.
    #[error("the bus (NATS) is not connected; nothing was published")]
    NotConnected,
    /// Sent, but the server did not confirm in time: it may or may not
    /// have it.
    #[error("the bus (NATS) did not confirm within {}s; the items may not have been published", CONFIRM_TIMEOUT.as_secs())]
    Unconfirmed,
    /// The client refused (closed, or the connection failed meanwhile).
    #[error("the bus (NATS) refused the publish: {0}")]
    Refused(String),
    /// JetStream could not be read (the stream, a consumer, a message).
    #[error("{0}")]
    Stream(String),
    /// A consumer ended before the stream's last message.
    #[error("the stream's consumer ended")]
    ConsumerEnded,
}

impl BusError {
    /// Whose fault.
    pub fn fault(&self) -> crate::error::Fault {
        crate::error::Fault::Bus
    }
}

/// JetStream's errors, as a [`BusError`].
fn stream_error(err: impl std::fmt::Display) -> BusError {
    BusError::Stream(err.to_string())
}

/// A connection to the bus.
pub struct Bus {
    client: async_nats::Client,
    prefix: String,
    metrics: Arc<Metrics>,
    jetstream: Option<Arc<JetStream>>,
}

/// Parses `bus_url`: comma-separated server URLs.
pub fn server_addrs(url: &str) -> Result<Vec<ServerAddr>, ConfigError> {
    let addrs: Vec<ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<ServerAddr>().map_err(|e| ConfigError::BusUrl {
                url: u.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err(ConfigError::NoBusServer);
    }
    Ok(addrs)
}

impl Bus {
    /// Starts connecting. Returns at once: an unreachable bus is retried in
    /// the background (with back-off) while the instance runs, `/health`
    /// says so and publishes are refused until it is back.
    pub async fn connect(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Bus>> {
        let addrs = server_addrs(&settings.url)?;
        metrics.bus_configured.store(true, Relaxed);
        metrics
            .bus_stream_wanted
            .store(settings.stream.is_some(), Relaxed);
        let events = metrics.clone();
        let mut options = ConnectOptions::new()
            .name(&settings.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            // 100 ms, doubling to 5 s: a server away for long is asked
            // every 5 s, not in a tight loop.
            .reconnect_delay_callback(|attempts| {
                let exp = u32::try_from(attempts.saturating_sub(1))
                    .unwrap_or(u32::MAX)
                    .min(6);
                Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(5))
            })
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .event_callback(move |event| {
                let metrics = events.clone();
                async move { on_event(&metrics, event) }
            });
        if let Some(path) = &settings.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| anyhow::anyhow!("bus_credentials_file {}: {e}", path.display()))?;
        }
        if let Some(token) = &settings.token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &settings.tls_ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&settings.tls_cert_file, &settings.tls_key_file) {
            (Some(cert), Some(key)) => {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            (None, None) => {}
            _ => anyhow::bail!("bus_tls_cert_file and bus_tls_key_file go together"),
        }
        tracing::info!(servers = %settings.url, "connecting to the bus (NATS)");
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| anyhow::anyhow!("bus (NATS): {e}"))?;
        let jetstream = settings.stream.as_ref().map(|stream| {
            Arc::new(JetStream {
                context: jetstream::new(client.clone()),
                config: jetstream::stream::Config {
                    name: stream_name(&settings.subject_prefix),
                    subjects: vec![format!("{}.ch.>", settings.subject_prefix)],
                    max_messages_per_subject: stream.per_channel,
                    max_age: stream.ttl,
                    num_replicas: stream.replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                },
                stream: tokio::sync::Mutex::new(None),
                metrics: metrics.clone(),
            })
        });
        if let Some(js) = &jetstream {
            // Ready before the first publish or subscriber needs it.
            let (js, client) = (js.clone(), client.clone());
            tokio::spawn(async move {
                loop {
                    if client.connection_state() == async_nats::connection::State::Connected
                        && js.stream().await.is_ok()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        Ok(Arc::new(Bus {
            client,
            prefix: settings.subject_prefix.clone(),
            metrics,
            jetstream,
        }))
    }

    /// Whether the bus keeps channel history (JetStream mode).
    pub fn keeps_history(&self) -> bool {
        self.jetstream.is_some()
    }

    /// Publishes `items` and waits for the server to confirm it has them.
    pub async fn publish(&self, items: &[Item]) -> Result<(), BusError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(BusError::NotConnected);
        }
        if let Some(js) = &self.jetstream {
            return self.publish_stored(js, items).await;
        }
        for item in items {
            let subject = subject::subject(&self.prefix, &item.channel);
            self.client
                .publish(subject, Bytes::from(encode_item_frame(item)))
                .await
                .map_err(|e| BusError::Refused(e.to_string()))?;
        }
        match tokio::time::timeout(CONFIRM_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {
                self.metrics
                    .bus_published
                    .fetch_add(items.len() as u64, Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(BusError::Refused(e.to_string())),
            Err(_) => Err(BusError::Unconfirmed),
        }
    }

    /// JetStream: every item acknowledged by the stream.
    async fn publish_stored(&self, js: &JetStream, items: &[Item]) -> Result<(), BusError> {
        js.stream().await?;
        let refused = |e: &dyn std::fmt::Display| BusError::Refused(e.to_string());
        let mut acks = Vec::with_capacity(items.len());
        for item in items {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(id) = &item.id {
                // The stream keeps one of two publishes with this id (a
                // publisher retrying after a 503, say).
                let msg_id = format!("{}\u{1f}{id}", item.channel);
                headers.insert("Nats-Msg-Id", msg_id.as_str());
            }
            let subject = subject::subject(&self.prefix, &item.channel);
            let ack = js
                .context
                .publish_with_headers(subject, headers, Bytes::from(encode_item_frame(item)))
                .await
                .map_err(|e| refused(&e))?;
            acks.push(ack);
        }
        let confirmed = tokio::time::timeout(CONFIRM_TIMEOUT, async {
            for ack in acks {
                ack.await.map_err(|e| refused(&e))?;
            }
            Ok(())
        })
        .await;
        match confirmed {
            Ok(Ok(())) => {
                self.metrics
                    .bus_published
                    .fetch_add(items.len() as u64, Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BusError::Unconfirmed),
        }
    }

    /// Subscribes to the channels the engine has subscribers for, as its
    /// changes (`[1|0] + channel`, the XSUB form) say, hands every item
    /// that arrives to `engine`, and answers its history `lookups` (JetStream
    /// mode) from the stream.
    pub fn follow(
        self: &Arc<Self>,
        changes: mpsc::Receiver<Multipart>,
        lookups: mpsc::Receiver<Lookup>,
        engine: mpsc::Sender<Input>,
    ) {
        let bus = self.clone();
        tokio::spawn(async move { bus.follow_changes(changes, lookups, engine).await });
    }

    async fn follow_changes(
        &self,
        mut changes: mpsc::Receiver<Multipart>,
        mut lookups: mpsc::Receiver<Lookup>,
        engine: mpsc::Sender<Input>,
    ) {
        // Per channel: its reading task, and (JetStream) where its lookups go.
        let mut subscribed: HashMap<String, (JoinHandle<()>, Option<mpsc::Sender<Lookup>>)> =
            HashMap::new();
        loop {
            let change = tokio::select! {
                // The engine sends a channel's subscription before lookups
                // on it: take changes first.
                biased;
                change = changes.recv() => match change {
                    Some(change) => change,
                    None => break,
                },
                Some(lookup) = lookups.recv() => {
                    let to = subscribed.get(&lookup.channel).and_then(|(_, to)| to.clone());
                    let unanswered = match to {
                        Some(to) => to.send(lookup).await.err().map(|e| e.0),
                        None => Some(lookup),
                    };
                    if let Some(lookup) = unanswered {
                        let _ = engine.send(Input::History { lookup, found: Since::Unknown }).await;
                    }
                    continue;
                }
            };
            let Some((&flag, name)) = change.first().and_then(|f| f.split_first()) else {
                continue;
            };
            let channel = String::from_utf8_lossy(name).into_owned();
            if flag == 0 {
                // Dropping the subscription unsubscribes; what it still
                // held was for nobody here.
                if let Some((task, _)) = subscribed.remove(&channel) {
                    task.abort();
                }
            } else if let std::collections::hash_map::Entry::Vacant(slot) =
                subscribed.entry(channel)
            {
                let subject = subject::subject(&self.prefix, slot.key());
                if let Some(js) = &self.jetstream {
                    let (to, from) = mpsc::channel(LOOKUPS_PER_CHANNEL);
                    let reader = Reader {
                        js: js.clone(),
                        client: self.client.clone(),
                        subject,
                        prefix: self.prefix.clone(),
                        engine: engine.clone(),
                        metrics: self.metrics.clone(),
                    };
                    slot.insert((tokio::spawn(reader.run(from)), Some(to)));
                } else {
                    // Queued while disconnected; the client subscribes again
                    // after every reconnection.
                    match self.client.subscribe(subject).await {
                        Ok(subscription) => {
                            slot.insert((
                                tokio::spawn(forward(
                                    subscription,
                                    self.prefix.clone(),
                                    engine.clone(),
                                    self.metrics.clone(),
                                )),
                                None,
                            ));
                        }
                        Err(err) => {
                            let channel = slot.key();
                            tracing::error!(%channel, error = %err, "bus (NATS): cannot subscribe");
                        }
                    }
                }
            }
            self.metrics
                .bus_channels
                .store(subscribed.len() as i64, Relaxed);
        }
        for (task, _) in subscribed.into_values() {
            task.abort();
        }
    }
}

/// History lookups a channel's reader may have waiting.
const LOOKUPS_PER_CHANNEL: usize = 256;

/// One channel's messages, in order, to the engine.
async fn forward(
    mut subscription: async_nats::Subscriber,
    prefix: String,
    engine: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    while let Some(message) = subscription.next().await {
        metrics.bus_received.fetch_add(1, Relaxed);
        match decode(&prefix, &message.subject, &message.payload) {
            Ok(item) => {
                if engine.send(Input::Items(vec![item])).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                metrics.bus_undecodable.fetch_add(1, Relaxed);
                tracing::warn!(subject = %message.subject, "bus message dropped: {err}");
            }
        }
    }
}

/// One channel read from the stream (JetStream mode).
struct Reader {
    js: Arc<JetStream>,
    client: async_nats::Client,
    subject: String,
    prefix: String,
    engine: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
}

impl Reader {
    /// The channel's items, in order, to the engine, through an ordered
    /// consumer starting with what is published from now on; it resumes by
    /// itself after a reconnection, and if it gives up a new one starts
    /// after the last message delivered. Lookups are answered once the
    /// consumer is up: the stream is then read up to a point the consumer
    /// has passed, so between the two nothing is missed.
    async fn run(self, mut lookups: mpsc::Receiver<Lookup>) {
        use jetstream::consumer::DeliverPolicy;
        // From the moment the channel got a subscriber here, however long
        // the consumer takes to set up (the stream may be electing a
        // leader): nothing published since is missed.
        let mut start = DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::now_utc(),
        };
        let mut delay = Duration::from_millis(100);
        loop {
            let mut messages = match self.consumer(start).await {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(subject = %self.subject, "bus (NATS): cannot read the channel from JetStream yet: {err}; again in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            delay = Duration::from_millis(100);
            let _reading = Reading::new(&self.metrics);
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    Some(lookup) = lookups.recv() => {
                        tokio::spawn(look_up(
                            self.js.clone(),
                            self.client.clone(),
                            self.subject.clone(),
                            self.prefix.clone(),
                            lookup,
                            self.engine.clone(),
                        ));
                        continue;
                    }
                };
                let Some(next) = next else { break };
                let message = match next {
                    Ok(message) => message,
                    Err(err) => {
                        tracing::warn!(subject = %self.subject, "bus (NATS): {err}");
                        continue;
                    }
                };
                self.metrics.bus_received.fetch_add(1, Relaxed);
                if let Ok(info) = message.info() {
                    start = DeliverPolicy::ByStartSequence {
                        start_sequence: info.stream_sequence + 1,
                    };
                    let lag = time::OffsetDateTime::now_utc() - info.published;
                    let lag_ms = i64::try_from(lag.whole_milliseconds()).unwrap_or(i64::MAX);
                    self.metrics.bus_lag_ms.store(lag_ms.max(0), Relaxed);
                }
                match decode(&self.prefix, &message.subject, &message.payload) {
                    Ok(item) => {
                        if self.engine.send(Input::Items(vec![item])).await.is_err() {
                            return;
                        }
                    }
                    Err(err) => {
                        self.metrics.bus_undecodable.fetch_add(1, Relaxed);
                        tracing::warn!(subject = %message.subject, "bus message dropped: {err}");
                    }
                }
            }
        }
    }

    async fn consumer(
        &self,
        start: jetstream::consumer::DeliverPolicy,
    ) -> Result<jetstream::consumer::push::Ordered, BusError> {
        ordered(&self.js, &self.client, &self.subject, start).await
    }
}

/// An ordered consumer of `subject` from `start`.
async fn ordered(
    js: &JetStream,
    client: &async_nats::Client,
    subject: &str,
    start: jetstream::consumer::DeliverPolicy,
) -> Result<jetstream::consumer::push::Ordered, BusError> {
    let config = jetstream::consumer::push::OrderedConfig {
        deliver_subject: client.new_inbox(),
        filter_subject: subject.to_owned(),
        deliver_policy: start,
        ..Default::default()
    };
    let stream = js.stream().await.map_err(stream_error)?;
    let consumer = stream.create_consumer(config).await.map_err(stream_error)?;
    consumer.messages().await.map_err(stream_error)
}

/// Answers a lookup: the channel's items in the stream after the position,
/// or `Unknown` when the stream does not have it (or cannot be read in
/// time).
async fn look_up(
    js: Arc<JetStream>,
    client: async_nats::Client,
    subject: String,
    prefix: String,
    lookup: Lookup,
    engine: mpsc::Sender<Input>,
) {
    let read = tokio::time::timeout(CONFIRM_TIMEOUT, stored(&js, &client, &subject, &prefix)).await;
    let found = match read {
        Ok(Ok(items)) => match items
            .iter()
            .position(|i| i.id.as_deref() == Some(lookup.after.as_str()))
        {
            Some(at) => Since::Found(items[at + 1..].to_vec()),
            None => Since::Unknown,
        },
        Ok(Err(err)) => {
            tracing::warn!(%subject, "bus (NATS): history not read: {err}");
            Since::Unknown
        }
        Err(_) => {
            tracing::warn!(%subject, "bus (NATS): history not read within {}s", CONFIRM_TIMEOUT.as_secs());
            Since::Unknown
        }
    };
    let _ = engine.send(Input::History { lookup, found }).await;
}

/// Every item the stream keeps on `subject`, oldest first.
async fn stored(
    js: &JetStream,
    client: &async_nats::Client,
    subject: &str,
    prefix: &str,
) -> Result<Vec<Item>, BusError> {
    use jetstream::stream::LastRawMessageErrorKind;
    let stream = js.stream().await.map_err(stream_error)?;
    let last = match stream.get_last_raw_message_by_subject(subject).await {
        Ok(last) => last.sequence,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(Vec::new()),
        Err(e) => return Err(stream_error(e)),
    };
    let mut messages =
        ordered(js, client, subject, jetstream::consumer::DeliverPolicy::All).await?;
    let mut items = Vec::new();
    while let Some(next) = messages.next().await {
        let message = next.map_err(stream_error)?;
        let sequence = message.info().map_err(stream_error)?.stream_sequence;
        if let Ok(item) = decode(prefix, &message.subject, &message.payload) {
            items.push(item);
        }
        if sequence >= last {
            return Ok(items);
        }
    }
    Err(BusError::ConsumerEnded)
}

/// Counts a channel as read from the stream while it lives (also when its
/// task is aborted).
struct Reading(Arc<AtomicI64>);

impl Reading {
    fn new(metrics: &Metrics) -> Reading {
        metrics.bus_reading.fetch_add(1, Relaxed);
        Reading(metrics.bus_reading.clone())
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// An item from a bus message: JSON (`{...}`), or `J` + JSON, `T` +
/// TNetString or a bare TNetString as on Pushpin's ZeroMQ inputs. The
/// subject names the channel.
pub fn decode(prefix: &str, subject: &str, payload: &[u8]) -> Result<Item, ItemError> {
    let channel = subject::channel(prefix, subject).ok_or_else(|| ItemError::NoChannel {
        subject: subject.to_owned(),
    })?;
    let item = if payload.first() == Some(&b'{') {
        let mut framed = Vec::with_capacity(payload.len() + 1);
        framed.push(b'J');
        framed.extend_from_slice(payload);
        parse_item_frame(&framed, Some(&channel))
    } else {
        parse_item_frame(payload, Some(&channel))
    };
    Ok(item?)
}

fn on_event(metrics: &Metrics, event: Event) {
    match event {
        Event::Connected => {
            metrics.bus_connected.store(1, Relaxed);
            tracing::info!("bus (NATS) connected");
        }
        Event::Disconnected => {
            metrics.bus_connected.store(0, Relaxed);
            tracing::warn!("bus (NATS) disconnected; reconnecting, publishes refused meanwhile");
        }
        Event::SlowConsumer(sid) => {
            metrics.bus_slow_consumer.fetch_add(1, Relaxed);
            tracing::error!(
                subscription = sid,
                "bus (NATS): a channel's subscription overflowed ({SUBSCRIPTION_CAPACITY} waiting); messages were lost"
            );
        }
        other => tracing::warn!("bus (NATS): {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists() {
        assert_eq!(server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        assert_eq!(
            server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,")
                .unwrap()
                .len(),
            2
        );
        assert!(matches!(server_addrs(""), Err(ConfigError::NoBusServer)));
        let err = server_addrs("nats://127.0.0.1:4222,http://x:1").unwrap_err();
        assert!(
            matches!(&err, ConfigError::BusUrl { url, .. } if url == "http://x:1"),
            "{err}"
        );
    }

    #[test]
    fn messages_in_every_framing() {
        let subject = subject::subject("holdfast", "a.b");
        let json = br#"{"formats":{"http-stream":{"content":"x"}}}"#;
        let item = decode("holdfast", &subject, json).unwrap();
        assert_eq!(item.channel, "a.b");
        let framed = [b"J".as_slice(), json].concat();
        assert_eq!(decode("holdfast", &subject, &framed).unwrap(), item);
        let encoded = encode_item_frame(&item);
        assert_eq!(decode("holdfast", &subject, &encoded).unwrap(), item);
    }

    #[test]
    fn bad_messages_say_why() {
        let s = subject::subject("holdfast", "c");
        assert!(matches!(
            decode("holdfast", "holdfast.ch.a.b", b"{}"),
            Err(ItemError::NoChannel { .. })
        ));
        for bad in [&b"{"[..], b"{}", b"", b"\xff\xfe", b"J[1]"] {
            assert!(decode("holdfast", &s, bad).is_err(), "{bad:?}");
        }
    }
}
