//! Publishing the run's items: `m<k>` markers as `http-stream` or
//! `ws-message` content, over HTTP (item k through the (k mod n)-th publish
//! API) or to a ZeroMQ broker's input.

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Item `k`: its marker in `format` (`http-stream`, `ws-message`) on
/// `channel`, naming the channel as a cache key to purge when `purge`.
pub(crate) fn item(channel: &str, k: usize, format: &str, purge: bool) -> serde_json::Value {
    let mut item = serde_json::json!({"channel": channel,
        "formats": {format: {"content": format!("m{k}\n")}}});
    if purge {
        item["purge"] = serde_json::json!([channel]);
    }
    item
}

/// Where items go.
pub(crate) struct Publisher {
    client: Client<HttpConnector, Full<bytes::Bytes>>,
    /// `<base>/publish/` of each publish API.
    uris: Vec<String>,
    /// A ZeroMQ XPUB instead (with the channel, its first frame).
    zmq: Option<(zmq::Socket, String)>,
}

impl Publisher {
    /// Through the publish APIs at `bases` (`http://host:port`).
    pub(crate) fn http(bases: &[String]) -> Publisher {
        Publisher {
            client: Client::builder(TokioExecutor::new()).build_http(),
            uris: bases
                .iter()
                .map(|base| format!("{}/publish/", base.trim_end_matches('/')))
                .collect(),
            zmq: None,
        }
    }

    /// Through a ZeroMQ socket instead (see [`zmq_publisher`]).
    pub(crate) fn with_zmq(mut self, socket: zmq::Socket, channel: &str) -> Publisher {
        self.zmq = Some((socket, channel.to_owned()));
        self
    }

    /// Publishes the k-th item; an error when the publish API refused it.
    pub(crate) async fn send(&self, k: usize, item: &serde_json::Value) -> anyhow::Result<()> {
        if let Some((socket, channel)) = &self.zmq {
            socket.send(channel.as_bytes(), zmq::SNDMORE)?;
            socket.send(format!("J{item}").as_bytes(), 0)?;
            return Ok(());
        }
        let body = serde_json::json!({ "items": [item] });
        let req = http::Request::post(&self.uris[k % self.uris.len()])
            .header("Content-Type", "application/json")
            .body(Full::new(bytes::Bytes::from(body.to_string())))?;
        let resp = self.client.request(req).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        anyhow::ensure!(status.is_success(), "publish answered {status}");
        Ok(())
    }
}

/// An XPUB connected to `addr`, handed over once `subscribers`
/// subscriptions to `channel` came through it (the broker passes each
/// instance's on).
pub(crate) fn zmq_publisher(
    addr: &str,
    channel: &str,
    subscribers: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<zmq::Socket>>> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::XPUB)?;
    socket.set_xpub_verbose(true)?;
    socket.set_rcvtimeo(60_000)?;
    socket.connect(addr)?;
    let wanted = [&[1u8][..], channel.as_bytes()].concat();
    Ok(tokio::task::spawn_blocking(move || {
        let mut seen = 0;
        while seen < subscribers {
            let message = socket.recv_bytes(0).map_err(|e| {
                anyhow::anyhow!("{seen} of {subscribers} subscriptions within 60 s: {e}")
            })?;
            if message == wanted {
                seen += 1;
            }
        }
        Ok(socket)
    }))
}
