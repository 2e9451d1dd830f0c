//! Requests the handler makes to the origin for a held session: a long-poll
//! asked again (with `Grip-Last`) after a gap, a hint or a recover; a
//! stream's next link; a gone link once a session ends. Each request is a
//! task of its own that reports to the engine over a channel, and the
//! origin's answer is read with the proxy's own GRIP code, so a retried
//! long-poll or a link page is understood exactly as a first response.
//!
//! Next-link and gone-link requests carry only the proxy's headers
//! (`Grip-Sig`, `Grip-Feature`, `X-Forwarded-*`) and `Grip-Last`, never the
//! client's: origins put what they need in the link's URL. Retries replay
//! the client's request whole.

use crate::error::OriginError;
use bytes::Bytes;
use holdfast_grip::answer::{hold_of, interpret, Answer};
use holdfast_grip::client::OriginClient;
use holdfast_grip::error_chain;
use holdfast_grip::sign::Signer;
use holdfast_protocol::handoff::{Hold, Origin, Request, Response};
use holdfast_protocol::zhttp::Header;
use holdfast_runtime::body::HttpBody;
use http_body_util::{BodyExt, Limited};
use std::time::Duration;
use tokio::sync::mpsc;
use url::Url;

/// Largest body of a retried response or a link page (read whole, then
/// sent on).
pub const MAX_BODY: usize = 1_000_000;

/// How long one request may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers of the original request that next and gone links keep: the
/// proxy's own, not the client's.
const LINK_HEADERS: &[&str] = &["grip-feature", "x-forwarded-for", "x-forwarded-proto"];

/// Why a session asks the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The long-poll asked again.
    Retry,
    /// The stream's next link.
    Link,
}

/// The origin's answer, GRIP applied.
#[derive(Debug)]
pub enum Reply {
    /// Hold instructions and the response that goes with them.
    Hold {
        /// The instructions (channel prefix applied).
        hold: Box<Hold>,
        /// Status, headers, body.
        response: Response,
    },
    /// A complete response, nothing held.
    Complete(Response),
}

/// A finished request, for the engine.
#[derive(Debug)]
pub struct Fetched {
    /// The session.
    pub key: String,
    /// The session's fetch generation when it was asked (stale answers are
    /// ignored).
    pub generation: u64,
    /// What it was for.
    pub purpose: Purpose,
    /// The answer, or why there is none.
    pub result: Result<Reply, OriginError>,
}

/// Starts requests and reports their answers.
#[derive(Clone)]
pub struct Fetcher {
    client: OriginClient,
    // Unbounded: each session has at most one request in flight, so the
    // number of answers waiting is bounded by the sessions held.
    done: mpsc::UnboundedSender<Fetched>,
}

/// One request to make.
struct Call {
    method: http::Method,
    uri: String,
    headers: Vec<Header>,
    body: Bytes,
}

impl Fetcher {
    /// A fetcher and the receiver of its answers.
    pub fn new() -> (Fetcher, mpsc::UnboundedReceiver<Fetched>) {
        let (done, rx) = mpsc::unbounded_channel();
        (
            Fetcher {
                client: OriginClient::new(),
                done,
            },
            rx,
        )
    }

    /// Asks the original request again, with `Grip-Last` for `last`
    /// (channel, id) pairs.
    pub fn retry(
        &self,
        key: &str,
        generation: u64,
        origin: &Origin,
        request: &Request,
        last: &[(String, String)],
    ) {
        let mut headers: Vec<Header> = origin
            .headers
            .iter()
            .filter(|h| !h.0.eq_ignore_ascii_case("grip-last"))
            .cloned()
            .collect();
        headers.extend(grip_last(last));
        let method = http::Method::from_bytes(request.method.as_bytes()).unwrap_or_default();
        let call = Call {
            method,
            uri: origin.uri.clone(),
            headers,
            body: request.body.clone(),
        };
        self.spawn(key, generation, Purpose::Retry, origin, call);
    }

    /// Fetches a stream's next link.
    pub fn link(
        &self,
        key: &str,
        generation: u64,
        origin: &Origin,
        link: &Url,
        last: &[(String, String)],
    ) {
        let mut headers = link_headers(origin, link);
        headers.extend(grip_last(last));
        let call = Call {
            method: http::Method::GET,
            uri: link.to_string(),
            headers,
            body: Bytes::new(),
        };
        self.spawn(key, generation, Purpose::Link, origin, call);
    }

    /// Tells the origin a session ended (`POST` to its gone link); the
    /// answer only matters for the log.
    pub fn gone(&self, origin: &Origin, link: &Url) {
        let call = Call {
            method: http::Method::POST,
            uri: link.to_string(),
            headers: link_headers(origin, link),
            body: Bytes::new(),
        };
        let client = self.client.clone();
        let origin = origin.clone();
        tokio::spawn(async move {
            let uri = call.uri.clone();
            match execute(&client, &origin, call).await {
                Ok(Reply::Complete(r)) if (200..300).contains(&r.code) => {
                    tracing::debug!(%uri, "gone link notified");
                }
                Ok(_) => tracing::info!(%uri, "gone link answered with an error status or a hold"),
                Err(err) => tracing::info!(%uri, "gone link failed: {err}"),
            }
        });
    }

    fn spawn(&self, key: &str, generation: u64, purpose: Purpose, origin: &Origin, call: Call) {
        let client = self.client.clone();
        let origin = origin.clone();
        let done = self.done.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            let result = execute(&client, &origin, call).await;
            let _ = done.send(Fetched {
                key,
                generation,
                purpose,
                result,
            });
        });
    }
}

/// `Grip-Last: <channel>; last-id=<id>`, one header per channel.
fn grip_last(last: &[(String, String)]) -> impl Iterator<Item = Header> + '_ {
    last.iter().map(|(channel, id)| {
        Header(
            "Grip-Last".into(),
            Bytes::from(format!("{channel}; last-id={id}")),
        )
    })
}

/// The proxy's headers for a link request, and `Host`: the original one
/// when the link stays on the origin (so virtual hosts and CDNs match),
/// else the link's own.
fn link_headers(origin: &Origin, link: &Url) -> Vec<Header> {
    let mut headers: Vec<Header> = origin
        .headers
        .iter()
        .filter(|h| LINK_HEADERS.iter().any(|n| h.0.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    let same_origin = Url::parse(&origin.uri).is_ok_and(|o| o.origin() == link.origin());
    let host = origin
        .headers
        .iter()
        .find(|h| h.0.eq_ignore_ascii_case("host"))
        .filter(|_| same_origin);
    match host {
        Some(host) => headers.push(host.clone()),
        None => {
            if let Some(h) = link.host_str() {
                let value = match link.port() {
                    Some(port) => format!("{h}:{port}"),
                    None => h.to_owned(),
                };
                headers.push(Header("Host".into(), Bytes::from(value)));
            }
        }
    }
    headers
}

async fn execute(client: &OriginClient, origin: &Origin, call: Call) -> Result<Reply, OriginError> {
    tokio::time::timeout(REQUEST_TIMEOUT, send(client, origin, call))
        .await
        .map_err(|_| OriginError::Timeout {
            secs: REQUEST_TIMEOUT.as_secs(),
        })?
}

async fn send(client: &OriginClient, origin: &Origin, call: Call) -> Result<Reply, OriginError> {
    let mut req = http::Request::new(HttpBody::Full(Some(call.body)));
    *req.method_mut() = call.method;
    *req.uri_mut() = call.uri.parse().map_err(|_| OriginError::BadUri {
        uri: call.uri.clone(),
    })?;
    let headers = req.headers_mut();
    for Header(name, value) in call.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some((iss, key)) = &origin.sig {
        let token = Signer::new(iss, key).ok().and_then(|s| s.token());
        if let Some(value) = token.and_then(|t| http::HeaderValue::from_str(&t).ok()) {
            headers.insert("grip-sig", value);
        }
    }
    let response = client
        .request(origin.insecure, req)
        .await
        .map_err(|e| OriginError::Unreachable(error_chain(&e)))?;
    match interpret(response, true).await? {
        Answer::Hold {
            instruct,
            mut response,
            rest,
        } => {
            // A page's body past the instruct limit: read the rest here (it
            // joins the stream's queue, within the same limit as any page).
            if let Some(rest) = rest {
                let rest = read_whole(rest).await?;
                let mut whole = bytes::BytesMut::from(&response.body[..]);
                whole.extend_from_slice(&rest);
                response.body = whole.freeze();
            }
            Ok(Reply::Hold {
                hold: Box::new(hold_of(*instruct, &origin.prefix)),
                response,
            })
        }
        Answer::Whole {
            code,
            reason,
            headers,
            body,
        } => Ok(Reply::Complete(Response {
            code,
            reason: reason.unwrap_or_default(),
            headers,
            body,
        })),
        Answer::Relay {
            code,
            reason,
            headers,
            body,
        } => {
            let body = read_whole(body).await?;
            Ok(Reply::Complete(Response {
                code,
                reason: reason.unwrap_or_default(),
                headers,
                body,
            }))
        }
    }
}

/// A body, read whole within [`MAX_BODY`].
async fn read_whole<B>(body: B) -> Result<Bytes, OriginError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| OriginError::Body {
            limit: MAX_BODY,
            reason: e.to_string(),
        })?
        .to_bytes())
}

/// Resolves a link from an instruction against the URI it came with.
pub fn resolve(base: &str, link: &str) -> Option<Url> {
    Url::parse(base).ok()?.join(link).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            uri: "http://127.0.0.1:8080/events?x=1".into(),
            headers: vec![
                Header("Host".into(), Bytes::from_static(b"example.com")),
                Header("Cookie".into(), Bytes::from_static(b"secret")),
                Header("Grip-Feature".into(), Bytes::from_static(b"link:next")),
                Header("X-Forwarded-For".into(), Bytes::from_static(b"10.0.0.1")),
            ],
            sig: None,
            insecure: false,
            prefix: String::new(),
        }
    }

    #[test]
    fn links_resolve_against_the_origin_uri() {
        let base = "http://127.0.0.1:8080/events/?x=1";
        assert_eq!(
            resolve(base, "/events/?link=next").unwrap().as_str(),
            "http://127.0.0.1:8080/events/?link=next"
        );
        assert_eq!(
            resolve(base, "next").unwrap().as_str(),
            "http://127.0.0.1:8080/events/next"
        );
        assert_eq!(
            resolve(base, "https://other.example/p").unwrap().as_str(),
            "https://other.example/p"
        );
        assert!(resolve("not a uri", "/x").is_none());
    }

    #[test]
    fn link_requests_carry_only_proxy_headers() {
        let names = |headers: Vec<Header>| -> Vec<String> {
            headers
                .into_iter()
                .map(|h| format!("{}={}", h.0, String::from_utf8_lossy(&h.1)))
                .collect()
        };
        let same = Url::parse("http://127.0.0.1:8080/next").unwrap();
        assert_eq!(
            names(link_headers(&origin(), &same)),
            [
                "Grip-Feature=link:next",
                "X-Forwarded-For=10.0.0.1",
                "Host=example.com"
            ]
        );
        let other = Url::parse("http://other.example:9000/next").unwrap();
        assert!(names(link_headers(&origin(), &other)).contains(&"Host=other.example:9000".into()));
        let last = vec![("news".to_owned(), "7".to_owned())];
        assert_eq!(
            names(grip_last(&last).collect()),
            ["Grip-Last=news; last-id=7"]
        );
    }
}
