//! `holdfast-publish`: publish one item from the command line, like
//! `pushpin-publish`, over HTTP (`POST /publish/`) or ZeroMQ PUSH.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Command line of `holdfast-publish`.
#[derive(Debug, Parser)]
#[command(
    name = "holdfast-publish",
    version,
    about = "Publish an item to Holdfast (or Pushpin)"
)]
pub struct Args {
    /// Channel to publish to.
    pub channel: String,
    /// Content; read from standard input when absent.
    pub content: Option<String>,
    /// Where to publish: an HTTP base (`http://127.0.0.1:5561`) or a ZeroMQ
    /// PULL address (`tcp://127.0.0.1:5560`).
    #[arg(long, default_value = "http://127.0.0.1:5561")]
    pub spec: String,
    /// Item id.
    #[arg(long)]
    pub id: Option<String>,
    /// Id of the previous item.
    #[arg(long = "prev-id")]
    pub prev_id: Option<String>,
    /// Sender (meta `sender`, for the skip-self filter).
    #[arg(long)]
    pub sender: Option<String>,
    /// Status code of the http-response format.
    #[arg(long, default_value_t = 200)]
    pub code: u16,
    /// Header of the http-response format, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Meta `key=value` (repeatable).
    #[arg(long)]
    pub meta: Vec<String>,
    /// Publish a hint (ask sessions to fetch from the origin) instead of content.
    #[arg(long)]
    pub hint: bool,
    /// Close streams (and WebSockets) instead of sending content.
    #[arg(long)]
    pub close: bool,
    /// Bypass sequencing.
    #[arg(long = "no-seq")]
    pub no_seq: bool,
    /// Do not append a newline to the content.
    #[arg(long = "no-eol")]
    pub no_eol: bool,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// A command-line value is malformed.
    #[error("{0}")]
    Usage(String),
    /// The publish endpoint refused or could not be reached.
    #[error("publish failed: {0}")]
    Transport(String),
}

/// The item as JSON, in the `formats` layout.
pub fn item(args: &Args, content: &str) -> Result<Value, PublishFailure> {
    let mut content = content.to_owned();
    if !args.no_eol && !content.ends_with('\n') {
        content.push('\n');
    }
    let mut headers = Map::new();
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            PublishFailure::Usage(format!("--header {header:?}: expected Name: value"))
        })?;
        headers.insert(
            name.trim().to_owned(),
            Value::String(value.trim().to_owned()),
        );
    }
    let mut meta = Map::new();
    for pair in &args.meta {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| PublishFailure::Usage(format!("--meta {pair:?}: expected key=value")))?;
        meta.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    if let Some(sender) = &args.sender {
        meta.insert("sender".into(), Value::String(sender.clone()));
    }
    let formats = if args.hint {
        json!({"http-response": {"action": "hint"}, "http-stream": {"action": "hint"}})
    } else if args.close {
        json!({"http-stream": {"action": "close"}, "ws-message": {"action": "close"}})
    } else {
        json!({
            "http-response": {"code": args.code, "headers": headers, "body": content},
            "http-stream": {"content": content},
            "ws-message": {"content": content.trim_end_matches('\n')},
        })
    };
    let mut item = json!({"channel": args.channel, "formats": formats});
    let fields = item
        .as_object_mut()
        .ok_or_else(|| PublishFailure::Usage("internal: item is not an object".into()))?;
    if let Some(id) = &args.id {
        fields.insert("id".into(), Value::String(id.clone()));
    }
    if let Some(prev) = &args.prev_id {
        fields.insert("prev-id".into(), Value::String(prev.clone()));
    }
    if !meta.is_empty() {
        fields.insert("meta".into(), Value::Object(meta));
    }
    if args.no_seq {
        fields.insert("no-seq".into(), Value::Bool(true));
    }
    Ok(item)
}

/// Publishes `item` to `spec`.
pub async fn publish(spec: &str, item: &Value) -> Result<(), PublishFailure> {
    if spec.starts_with("tcp://") || spec.starts_with("ipc://") {
        return publish_zmq(spec, item).await;
    }
    let base = spec.trim_end_matches('/');
    let uri = format!("{base}/publish/");
    let body = json!({"items": [item]}).to_string();
    let req = http::Request::post(&uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| PublishFailure::Usage(format!("--spec {spec:?}: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| PublishFailure::Transport(format!("{uri}: no answer within 10 s")))?
        .map_err(|e| PublishFailure::Transport(format!("{uri}: {e}")))?;
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(PublishFailure::Transport(format!(
            "{uri}: {status}: {}",
            String::from_utf8_lossy(&text).trim()
        )));
    }
    Ok(())
}

async fn publish_zmq(spec: &str, item: &Value) -> Result<(), PublishFailure> {
    let spec = spec.to_owned();
    let frame = format!("J{item}");
    tokio::task::spawn_blocking(move || {
        let ctx = zmq::Context::new();
        let push = ctx
            .socket(zmq::PUSH)
            .map_err(|e| PublishFailure::Transport(e.to_string()))?;
        // Wait up to 5 s on close for the connection and the send to finish.
        push.set_linger(5000)
            .map_err(|e| PublishFailure::Transport(e.to_string()))?;
        push.connect(&spec)
            .map_err(|e| PublishFailure::Transport(format!("{spec}: {e}")))?;
        push.send(frame.as_bytes(), 0)
            .map_err(|e| PublishFailure::Transport(format!("{spec}: {e}")))?;
        Ok(())
    })
    .await
    .map_err(|e| PublishFailure::Transport(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::parse_from(std::iter::once("holdfast-publish").chain(list.iter().copied()))
    }

    #[test]
    fn builds_items() {
        let a = args(&[
            "news",
            "hello",
            "--id",
            "2",
            "--prev-id",
            "1",
            "-H",
            "X-A: 1",
            "--meta",
            "k=v",
            "--sender",
            "me",
            "--code",
            "201",
        ]);
        let item = item(&a, "hello").unwrap();
        assert_eq!(item["channel"], "news");
        assert_eq!(item["id"], "2");
        assert_eq!(item["prev-id"], "1");
        assert_eq!(item["formats"]["http-stream"]["content"], "hello\n");
        assert_eq!(item["formats"]["http-response"]["code"], 201);
        assert_eq!(item["formats"]["http-response"]["headers"]["X-A"], "1");
        assert_eq!(item["meta"]["sender"], "me");
        // What it builds is what the handler accepts.
        let body = json!({"items": [item]}).to_string();
        assert!(holdfast_protocol::publish::parse_items_json(body.as_bytes()).is_ok());
        let close = super::item(&args(&["news", "--close"]), "").unwrap();
        assert_eq!(close["formats"]["http-stream"]["action"], "close");
        let raw = super::item(&args(&["news", "x", "--no-eol"]), "x").unwrap();
        assert_eq!(raw["formats"]["http-stream"]["content"], "x");
        assert!(super::item(&args(&["n", "x", "-H", "bad"]), "x").is_err());
        assert!(super::item(&args(&["n", "x", "--meta", "bad"]), "x").is_err());
    }
}
