//! Purge + publish: an item that names cache objects (`purge`) is
//! delivered only after those objects were purged from every configured
//! cache, so a client that connects after the publish gets fresh data; and
//! such items are paced per channel: the first goes at once, further ones
//! within the window collapse into one trailing purge + publish of the
//! latest (what the Live Counter demo's publisher does).
//!
//! Purge targets: `self` (the proxies' edge caches, over the WebSocket
//! delivery socket, topic `*purge`), a Varnish base URL (`PURGE
//! <path>` with the URL's `Host`; `xkey-purge` / `xkey-softpurge` for
//! keys), and `fastly:<service id>` (the Fastly API: `POST
//! /service/<id>/purge/<key>` with `Fastly-Key`, `Fastly-Soft-Purge: 1`;
//! URLs get `PURGE <url>` with the same key). A purge that fails or takes
//! longer than [`PURGE_TIMEOUT`] is logged and retried in the background,
//! and the item is delivered anyway.

use crate::engine::Input;
use crate::error::{ConfigError, PurgeError};
use bytes::Bytes;
use holdfast_grip::client::OriginClient;
use holdfast_protocol::format::{self, Format};
use holdfast_protocol::publish::{Item, Purge};
use holdfast_protocol::wscontrol::{CachePurge, Deliver, PURGE_TOPIC};
use holdfast_protocol::zmq::Multipart;
use holdfast_runtime::body::HttpBody;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long delivery waits for the purges.
pub const PURGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Background retries of a failed purge (1, 2, 4 s apart).
const RETRIES: u32 = 3;

/// Items waiting for the purger.
const QUEUE: usize = 1024;

/// Where purges go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The proxies' edge caches.
    Own,
    /// A Varnish (or any cache taking `PURGE`) at this base URL.
    Varnish(String),
    /// A Fastly service, by id.
    Fastly(String),
}

impl std::str::FromStr for Target {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Target, ConfigError> {
        let s = s.trim();
        if s == "self" {
            return Ok(Target::Own);
        }
        if let Some(id) = s.strip_prefix("fastly:") {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ConfigError::FastlyServiceId {
                    target: s.to_owned(),
                });
            }
            return Ok(Target::Fastly(id.to_owned()));
        }
        let base = s.trim_end_matches('/');
        if (base.starts_with("http://") || base.starts_with("https://"))
            && base.parse::<http::Uri>().is_ok_and(|u| u.host().is_some())
        {
            return Ok(Target::Varnish(base.to_owned()));
        }
        Err(ConfigError::PurgeTarget {
            target: s.to_owned(),
        })
    }
}

/// The purger's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where purges go.
    pub targets: Vec<Target>,
    /// Pacing window per channel.
    pub window: Duration,
    /// Fastly API base URL.
    pub fastly_api: String,
    /// Fastly API token.
    pub fastly_token: Option<String>,
}

/// Starts the purger; items with `purge` go to the returned sender, and
/// reach `engine` once purged.
pub fn start(
    settings: Settings,
    engine: mpsc::Sender<Input>,
    proxies: Option<mpsc::Sender<Multipart>>,
    format: Format,
    metrics: Arc<crate::metrics::Metrics>,
) -> mpsc::Sender<Item> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let purger = Arc::new(Purger {
        settings,
        client: OriginClient::new(),
        proxies,
        format,
        metrics,
    });
    tokio::spawn(pace(purger, rx, engine));
    tx
}

/// A channel's pacing.
#[derive(Default)]
struct Pace {
    /// When its last purge + publish started.
    last: Option<Instant>,
    /// One is under way (the next waits for it, to keep order).
    busy: bool,
    /// The latest item waiting for the window.
    pending: Option<Item>,
}

/// Paces items per channel and sends each through [`Purger::run`].
async fn pace(purger: Arc<Purger>, mut items: mpsc::Receiver<Item>, engine: mpsc::Sender<Input>) {
    let window = purger.settings.window;
    let mut channels: HashMap<String, Pace> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    loop {
        let now = Instant::now();
        // Send what may go now.
        for (channel, pace) in channels.iter_mut() {
            let due = pace.last.is_none_or(|last| last + window <= now);
            if due && !pace.busy {
                if let Some(item) = pace.pending.take() {
                    pace.last = Some(now);
                    pace.busy = true;
                    let (purger, engine, done) = (purger.clone(), engine.clone(), done_tx.clone());
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        purger.run(item, &engine).await;
                        let _ = done.send(channel);
                    });
                }
            }
        }
        // Forget channels quiet for a whole window.
        channels.retain(|_, p| {
            p.busy || p.pending.is_some() || p.last.is_some_and(|l| l + window > now)
        });
        let next = channels
            .values()
            .filter(|p| p.pending.is_some() && !p.busy)
            .filter_map(|p| p.last.map(|l| l + window))
            .min();
        tokio::select! {
            item = items.recv() => {
                let Some(item) = item else { return };
                let pace = channels.entry(item.channel.clone()).or_default();
                if pace.pending.is_some() {
                    tracing::debug!(channel = %item.channel, "purge + publish collapsed into the latest");
                }
                pace.pending = Some(item);
            }
            Some(channel) = done_rx.recv() => {
                if let Some(pace) = channels.get_mut(&channel) {
                    pace.busy = false;
                }
            }
            _ = sleep_until(next) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends purges.
struct Purger {
    settings: Settings,
    client: OriginClient,
    proxies: Option<mpsc::Sender<Multipart>>,
    format: Format,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Purger {
    /// Purges what the item names (waiting up to [`PURGE_TIMEOUT`]), then
    /// hands it to the engine.
    async fn run(self: &Arc<Self>, mut item: Item, engine: &mpsc::Sender<Input>) {
        if let Some(purge) = item.purge.take() {
            let started = Instant::now();
            let mut jobs = tokio::task::JoinSet::new();
            for target in &self.settings.targets {
                jobs.spawn(self.purge_with_retries(target.clone(), purge.clone()));
            }
            let waited = tokio::time::timeout(PURGE_TIMEOUT, async {
                while jobs.join_next().await.is_some() {}
            })
            .await;
            // Retries go on in the background.
            jobs.detach_all();
            if waited.is_err() {
                tracing::warn!(channel = %item.channel, "purge still under way after {}s; delivering anyway", PURGE_TIMEOUT.as_secs());
            }
            tracing::info!(
                channel = %item.channel,
                keys = purge.keys.len(),
                urls = purge.urls.len(),
                ms = started.elapsed().as_millis() as u64,
                "purge + publish"
            );
        }
        if engine.send(Input::Items(vec![item])).await.is_err() {
            tracing::warn!("engine gone; purged item not delivered");
        }
    }

    /// One target's purge, retried in the background after failures.
    fn purge_with_retries(
        self: &Arc<Self>,
        target: Target,
        purge: Purge,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            let mut delay = Duration::from_secs(1);
            for attempt in 0..=RETRIES {
                let result = this.purge(&target, &purge).await;
                let counter = if result.is_ok() {
                    &this.metrics.purges
                } else {
                    &this.metrics.purge_failures
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match result {
                    Ok(()) => return,
                    Err(err) if attempt < RETRIES => {
                        tracing::warn!(target = ?target, attempt = attempt + 1, "purge failed: {err}; retrying in {}s", delay.as_secs());
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(err) => {
                        tracing::error!(target = ?target, "purge failed {} times, given up: {err}", RETRIES + 1)
                    }
                }
            }
        }
    }

    async fn purge(&self, target: &Target, purge: &Purge) -> Result<(), PurgeError> {
        match target {
            Target::Own => self.purge_own(purge).await,
            Target::Varnish(base) => {
                for url in &purge.urls {
                    let (host, path) = split_url(url)?;
                    self.send("PURGE", &format!("{base}{path}"), &[("host", host)])
                        .await?;
                }
                if !purge.keys.is_empty() {
                    let header = if purge.soft {
                        "xkey-softpurge"
                    } else {
                        "xkey-purge"
                    };
                    self.send(
                        "PURGE",
                        &format!("{base}/"),
                        &[(header, &purge.keys.join(" "))],
                    )
                    .await?;
                }
                Ok(())
            }
            Target::Fastly(service) => {
                let token = self
                    .settings
                    .fastly_token
                    .as_deref()
                    .ok_or(PurgeError::NoFastlyToken)?;
                let mut headers = vec![("fastly-key", token)];
                if purge.soft {
                    headers.push(("fastly-soft-purge", "1"));
                }
                let api = self.settings.fastly_api.trim_end_matches('/');
                for key in &purge.keys {
                    let url = format!("{api}/service/{service}/purge/{key}");
                    self.send("POST", &url, &headers).await?;
                }
                for url in &purge.urls {
                    self.send("PURGE", url, &headers).await?;
                }
                Ok(())
            }
        }
    }

    /// The proxies' edge caches: one message for all of them.
    async fn purge_own(&self, purge: &Purge) -> Result<(), PurgeError> {
        let Some(proxies) = &self.proxies else {
            return Ok(());
        };
        let content = CachePurge {
            keys: purge.keys.clone(),
            urls: purge.urls.clone(),
            soft: purge.soft,
        };
        let content =
            serde_json::to_vec(&content).map_err(|e| PurgeError::Encode(e.to_string()))?;
        let deliver = Deliver {
            kind: "purge".into(),
            content: Bytes::from(content),
            ..Deliver::default()
        };
        let frame =
            format::encode(&deliver, self.format).map_err(|e| PurgeError::Encode(e.to_string()))?;
        proxies
            .send(vec![PURGE_TOPIC.as_bytes().to_vec(), frame])
            .await
            .map_err(|_| PurgeError::ProxiesGone)
    }

    /// One request; a non-2xx answer is a failure (404 from a cache that
    /// did not hold the object is not: nothing to purge).
    async fn send(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<(), PurgeError> {
        let mut req = http::Request::new(HttpBody::empty());
        // `PURGE` or `POST`: a method name that is always valid.
        *req.method_mut() = http::Method::from_bytes(method.as_bytes())
            .map_err(|e| PurgeError::Encode(e.to_string()))?;
        *req.uri_mut() = url.parse().map_err(|_| PurgeError::BadUrl {
            url: url.to_owned(),
        })?;
        for (name, value) in headers {
            let bad = |reason: String| PurgeError::BadHeader {
                name: (*name).to_owned(),
                reason,
            };
            let value = http::HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?;
            let name =
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
            req.headers_mut().insert(name, value);
        }
        let response = tokio::time::timeout(PURGE_TIMEOUT, self.client.request(false, req))
            .await
            .map_err(|_| PurgeError::NoAnswer {
                method,
                url: url.to_owned(),
            })?
            .map_err(|e| PurgeError::Transport {
                method,
                url: url.to_owned(),
                reason: holdfast_grip::error_chain(&e),
            })?;
        let status = response.status();
        if status.is_success() || status == http::StatusCode::NOT_FOUND {
            tracing::debug!(%url, status = status.as_u16(), "purged");
            Ok(())
        } else {
            Err(PurgeError::Status {
                method,
                url: url.to_owned(),
                status,
            })
        }
    }
}

/// `http://host[:port]/path` → (`host[:port]`, `/path`).
fn split_url(url: &str) -> Result<(&str, &str), PurgeError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| PurgeError::NotHttpUrl {
            url: url.to_owned(),
        })?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!("self".parse(), Ok(Target::Own));
        assert_eq!(
            "http://127.0.0.1:6081/".parse(),
            Ok(Target::Varnish("http://127.0.0.1:6081".into()))
        );
        assert_eq!(
            "fastly:SU1Z0isxPaozGVKXdv0eY".parse(),
            Ok(Target::Fastly("SU1Z0isxPaozGVKXdv0eY".into()))
        );
        for bad in ["", "varnish", "fastly:", "fastly:a/b", "ftp://x", "http://"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://example.com:8080/a?b=1"),
            Ok(("example.com:8080", "/a?b=1"))
        );
        assert_eq!(split_url("https://example.com"), Ok(("example.com", "/")));
        assert!(split_url("example.com/a").is_err());
    }
}
