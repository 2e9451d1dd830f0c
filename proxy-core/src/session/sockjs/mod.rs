//! SockJS (route options `sockjs=<prefix>` and `sockjs_as_path=<path>`), as
//! Pushpin offers it: browsers with the sockjs-client library talk to
//! `<prefix>/...` over whichever transport they can (WebSocket,
//! xhr-streaming, EventSource, xhr-polling, JSONP polling, and the iframe
//! ones through `/iframe.html`, which loads `[proxy] sockjs_url`; not
//! htmlfile), and the origin sees one
//! WebSocket per SockJS session, at `sockjs_as_path` (by default the
//! prefix), through the route's targets as any WebSocket of the route
//! (GRIP and WebSocket-over-HTTP included). `<prefix>/websocket` is a
//! plain WebSocket to that path.
//!
//! - this file: the endpoints under the prefix (`/info`, the session URLs,
//!   `/websocket`) and the transports, each carrying one session's frames
//!   to its client within connmgr's credits.
//! - [`frames`]: the SockJS framing.
//! - [`peer`]: a session: its frames, and the task that stands for its
//!   client toward the origin.

mod frames;
mod peer;

pub use peer::Registry;

use super::{Prepared, Session};
use crate::origin::jsonp::valid_callback;
use bytes::Bytes;
use frames::Frame;
use holdfast_protocol::zhttp::{Header, Packet, PacketType};
use peer::{Opener, SockSession};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};

/// How often a session with nothing to say sends `h`.
const HEARTBEAT: Duration = Duration::from_secs(25);

/// Bytes a streaming transport sends before ending its response, so
/// browsers do not keep whole streams in memory (the client reconnects).
const STREAM_LIMIT: usize = 128 * 1024;

/// Largest `xhr_send` body.
const MAX_SEND: usize = 100_000;

/// Credits offered to connmgr for a WebSocket client's messages.
const WS_WINDOW: usize = 64 * 1024;

/// Whether a request is for the route's SockJS endpoints.
pub(super) fn applies(prepared: &Prepared) -> bool {
    let path = prepared.path.split('?').next().unwrap_or("");
    prepared
        .route
        .sockjs
        .as_deref()
        .is_some_and(|prefix| path == prefix || path.starts_with(&format!("{prefix}/")))
}

/// How a receiving connection writes frames.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    /// `xhr`: one frame per request.
    Polling,
    /// `xhr_streaming`: frames, one per line, after a 2 KiB prelude.
    Streaming,
    /// `eventsource`: frames as server-sent events.
    EventSource,
    /// `jsonp`: one frame per request, as a call to this callback.
    Jsonp(String),
}

impl Transport {
    fn content_type(&self) -> &'static str {
        match self {
            Transport::EventSource => "text/event-stream; charset=UTF-8",
            _ => "application/javascript; charset=UTF-8",
        }
    }

    /// One frame per request.
    fn polls(&self) -> bool {
        matches!(self, Transport::Polling | Transport::Jsonp(_))
    }

    fn prelude(&self) -> Bytes {
        match self {
            Transport::Polling | Transport::Jsonp(_) => Bytes::new(),
            Transport::Streaming => {
                let mut prelude = "h".repeat(2048);
                prelude.push('\n');
                Bytes::from(prelude)
            }
            Transport::EventSource => Bytes::from_static(b"\r\n"),
        }
    }

    fn write(&self, frame: &Frame) -> Bytes {
        match self {
            Transport::EventSource => Bytes::from(format!("data: {}\r\n\r\n", frame.encode())),
            Transport::Jsonp(callback) => {
                let frame = serde_json::Value::String(frame.encode()).to_string();
                Bytes::from(format!("/**/{callback}({frame});\r\n"))
            }
            _ => Bytes::from(format!("{}\n", frame.encode())),
        }
    }
}

/// The parts of a session URL: `/<server>/<session>/<transport>`.
fn session_url(rest: &str) -> Option<(&str, &str)> {
    let mut parts = rest.strip_prefix('/')?.split('/');
    let (server, session, transport) = (parts.next()?, parts.next()?, parts.next()?);
    let fine = |s: &str| !s.is_empty() && !s.contains('.');
    (parts.next().is_none() && fine(server) && fine(session)).then_some((session, transport))
}

/// A session's name: its host, the route's prefix and the client's id.
fn session_key(prepared: &Prepared, prefix: &str, id: &str) -> String {
    format!("{}{prefix} {id}", prepared.host)
}

/// Headers every SockJS answer carries: no caching, and the caller's
/// origin allowed with credentials (SockJS clients on other origins).
fn common_headers(request: &[Header]) -> Vec<Header> {
    let origin = request
        .iter()
        .find(|Header(n, _)| n.eq_ignore_ascii_case("origin"))
        .map(|Header(_, v)| v.clone())
        .filter(|v| !v.is_empty() && &v[..] != b"null")
        .unwrap_or_else(|| Bytes::from_static(b"*"));
    vec![
        Header(
            "Cache-Control".into(),
            Bytes::from_static(b"no-store, no-cache, no-transform, must-revalidate, max-age=0"),
        ),
        Header("Access-Control-Allow-Origin".into(), origin),
        Header(
            "Access-Control-Allow-Credentials".into(),
            Bytes::from_static(b"true"),
        ),
    ]
}

fn header(name: &str, value: impl Into<Bytes>) -> Header {
    Header(name.to_owned(), value.into())
}

impl Session {
    /// Serves a request under the route's SockJS prefix.
    pub(super) async fn sockjs(&mut self, mut prepared: Prepared) -> (u16, &'static str) {
        let prefix = prepared.route.sockjs.clone().unwrap_or_default();
        let path = prepared.path.split('?').next().unwrap_or("").to_owned();
        let rest = path[prefix.len()..].to_owned();
        let method = prepared.method.as_str().to_owned();
        if prepared.websocket {
            if rest == "/websocket" {
                // A plain WebSocket, to the path the origin knows.
                prepared.path = match &prepared.route.sockjs_as_path {
                    Some(as_path) => as_path.clone(),
                    None => format!("{prefix}/websocket"),
                };
                prepared.route.sockjs = None;
                return if prepared.route.targets.iter().any(|t| t.over_http) {
                    self.over_http(Box::new(prepared)).await
                } else {
                    self.websocket(Box::new(prepared)).await
                };
            }
            return match session_url(&rest) {
                Some((id, "websocket")) if method == "GET" => {
                    let key = session_key(&prepared, &prefix, id);
                    self.sockjs_websocket(&prepared, &key).await
                }
                _ => self.sockjs_plain(&prepared, 404, "Not Found").await,
            };
        }
        if method == "OPTIONS" {
            let mut headers = common_headers(&prepared.headers);
            let allowed: &[u8] = if rest.starts_with("/info") {
                b"OPTIONS, GET"
            } else {
                b"OPTIONS, POST"
            };
            headers.push(header("Access-Control-Allow-Methods", allowed));
            headers.push(header("Access-Control-Max-Age", "31536000"));
            if let Some(asked) = prepared
                .headers
                .iter()
                .find(|Header(n, _)| n.eq_ignore_ascii_case("access-control-request-headers"))
            {
                headers.push(header("Access-Control-Allow-Headers", asked.1.clone()));
            }
            self.respond(204, headers, Bytes::new()).await;
            return (204, "sockjs options");
        }
        match (method.as_str(), rest.as_str()) {
            ("GET", "" | "/") => {
                let mut headers = common_headers(&prepared.headers);
                headers.push(header("Content-Type", "text/plain; charset=UTF-8"));
                self.respond(200, headers, Bytes::from_static(b"Welcome to SockJS!\n"))
                    .await;
                return (200, "sockjs welcome");
            }
            ("GET", iframe) if is_iframe(iframe) => return self.sockjs_iframe(&prepared).await,
            ("GET", "/info" | "/info/") => {
                let info = serde_json::json!({
                    "websocket": true,
                    "origins": ["*:*"],
                    "cookie_needed": false,
                    "entropy": rand_entropy(),
                });
                let mut headers = common_headers(&prepared.headers);
                headers.push(header("Content-Type", "application/json; charset=UTF-8"));
                self.respond(200, headers, Bytes::from(format!("{info}\n")))
                    .await;
                return (200, "sockjs info");
            }
            _ => {}
        }
        let Some((id, transport)) = session_url(&rest) else {
            return self.sockjs_plain(&prepared, 404, "Not Found").await;
        };
        let key = session_key(&prepared, &prefix, id);
        match (method.as_str(), transport) {
            ("POST", "xhr") => {
                self.sockjs_receive(&prepared, &key, Transport::Polling)
                    .await
            }
            ("POST", "xhr_streaming") => {
                self.sockjs_receive(&prepared, &key, Transport::Streaming)
                    .await
            }
            ("GET", "eventsource") => {
                self.sockjs_receive(&prepared, &key, Transport::EventSource)
                    .await
            }
            ("GET", "jsonp") => match query_value(&prepared.path, &["c", "callback"]) {
                Some(callback) if valid_callback(&callback) => {
                    self.sockjs_receive(&prepared, &key, Transport::Jsonp(callback))
                        .await
                }
                _ => {
                    self.sockjs_plain(&prepared, 500, "\"callback\" parameter required")
                        .await
                }
            },
            ("POST", "xhr_send") => self.sockjs_send(&prepared, &key, false).await,
            ("POST", "jsonp_send") => self.sockjs_send(&prepared, &key, true).await,
            _ => self.sockjs_plain(&prepared, 404, "Not Found").await,
        }
    }

    /// The session `key`, started for this request if it is new.
    fn sockjs_session(&self, prepared: &Prepared, key: &str) -> Arc<SockSession> {
        let shared = self.shared.clone();
        shared.sockjs.get_or_start(&self.shared, key, || {
            let prefix = prepared.route.sockjs.clone().unwrap_or_default();
            let as_path = prepared.route.sockjs_as_path.clone().unwrap_or(prefix);
            let scheme = if prepared.tls { "wss" } else { "ws" };
            let mut route = prepared.route.clone();
            route.sockjs = None;
            let headers = prepared
                .headers
                .iter()
                .filter(|Header(n, _)| {
                    !holdfast_protocol::zhttp::is_hop_by_hop(n)
                        && !n.eq_ignore_ascii_case("content-length")
                        && !n.eq_ignore_ascii_case("content-type")
                })
                .cloned()
                .collect();
            Opener {
                route,
                uri: format!("{scheme}://{}{as_path}", prepared.host),
                headers,
                peer: prepared.peer.clone(),
            }
        })
    }

    /// A receiving connection: frames of session `key` as they come
    /// (one, for polling), then the end of the response.
    async fn sockjs_receive(
        &mut self,
        prepared: &Prepared,
        key: &str,
        transport: Transport,
    ) -> (u16, &'static str) {
        let session = self.sockjs_session(prepared, key);
        let mut headers = common_headers(&prepared.headers);
        headers.push(header("Content-Type", transport.content_type()));
        if !session.attach() {
            // One receiving connection per session.
            let frame = Frame::Close(2010, "Another connection still open".into());
            let mut body = transport.prelude().to_vec();
            body.extend_from_slice(&transport.write(&frame));
            self.respond(200, headers, Bytes::from(body)).await;
            return (200, "sockjs busy");
        }
        let outcome = self
            .sockjs_stream(&session, headers, &transport)
            .await
            .unwrap_or("client disconnected");
        session.detach();
        (200, outcome)
    }

    async fn sockjs_stream(
        &mut self,
        session: &SockSession,
        headers: Vec<Header>,
        transport: &Transport,
    ) -> Result<&'static str, &'static str> {
        let mut head = self.packet(PacketType::Data);
        head.code = Some(200);
        head.reason = Some("OK".into());
        head.headers = Some(headers);
        head.body = Some(Bytes::new());
        head.more = true;
        self.send(head).await;
        self.sockjs_write(transport.prelude()).await?;
        let mut sent = 0;
        let mut heartbeat = Instant::now() + HEARTBEAT;
        loop {
            let frame = tokio::select! {
                frame = session.next_frame() => frame,
                _ = sleep_until(heartbeat) => Frame::Heartbeat,
                packet = self.inbox.recv() => {
                    self.sockjs_from_connmgr(packet.map(|p| *p))?;
                    continue;
                }
            };
            heartbeat = Instant::now() + HEARTBEAT;
            let bytes = transport.write(&frame);
            sent += bytes.len();
            self.sockjs_write(bytes).await?;
            let done =
                matches!(frame, Frame::Close(..)) || transport.polls() || sent > STREAM_LIMIT;
            if done {
                let mut end = self.packet(PacketType::Data);
                end.body = Some(Bytes::new());
                self.send(end).await;
                return Ok("sockjs frames sent");
            }
        }
    }

    /// Writes body bytes to connmgr within its credits, taking its
    /// packets meanwhile; `Err` when the client went away.
    async fn sockjs_write(&mut self, mut data: Bytes) -> Result<(), &'static str> {
        while !data.is_empty() {
            if self.endpoint.can_send() {
                let chunk = data.split_to(self.endpoint.take_credits(data.len()));
                let mut packet = self.packet(PacketType::Data);
                packet.body = Some(chunk);
                packet.more = true;
                self.send(packet).await;
                continue;
            }
            let deadline = self.endpoint.next_deadline();
            tokio::select! {
                packet = self.inbox.recv() => self.sockjs_from_connmgr(packet.map(|p| *p))?,
                _ = sleep_until(deadline) => {
                    if !self.on_timer().await {
                        return Err("connmgr gone");
                    }
                }
            }
        }
        Ok(())
    }

    /// A packet from connmgr while answering: credits are taken; a cancel
    /// means the client went away.
    fn sockjs_from_connmgr(&mut self, packet: Option<Packet>) -> Result<(), &'static str> {
        let packet = packet.ok_or("shutdown")?;
        if !self.take_in(&packet) {
            return Err("bad seq");
        }
        match packet.kind() {
            PacketType::Cancel | PacketType::Error => Err("client disconnected"),
            _ => Ok(()),
        }
    }

    /// `xhr_send` (or `jsonp_send`, whose body may be a form with `d`): the
    /// client's messages, passed on (waiting while too many wait for the
    /// origin); 204 (`ok` for JSONP), or what is wrong.
    async fn sockjs_send(
        &mut self,
        prepared: &Prepared,
        key: &str,
        jsonp: bool,
    ) -> (u16, &'static str) {
        let Some(session) = self.shared.sockjs.get(key) else {
            return self.sockjs_plain(prepared, 404, "Not Found").await;
        };
        if let Err(outcome) = self.finish_body().await {
            return (0, outcome);
        }
        let body = match self.request.as_ref().filter(|_| !self.body_open) {
            Some(request) if request.body.len() <= MAX_SEND => request.body.clone(),
            _ => return self.sockjs_plain(prepared, 413, "Payload too large.").await,
        };
        let form = prepared.headers.iter().any(|Header(n, v)| {
            n.eq_ignore_ascii_case("content-type")
                && v.starts_with(b"application/x-www-form-urlencoded")
        });
        let body = if jsonp && form {
            Bytes::from(form_value(&body, "d").unwrap_or_default())
        } else {
            body
        };
        let messages = match frames::messages(&body, false) {
            Ok(messages) => messages,
            Err(err) => return self.sockjs_plain(prepared, 500, &err.to_string()).await,
        };
        if !session.send(messages).await {
            return self.sockjs_plain(prepared, 404, "Not Found").await;
        }
        let mut headers = common_headers(&prepared.headers);
        headers.push(header("Content-Type", "text/plain; charset=UTF-8"));
        if jsonp {
            self.respond(200, headers, Bytes::from_static(b"ok")).await;
            return (200, "sockjs send");
        }
        self.respond(204, headers, Bytes::new()).await;
        (204, "sockjs send")
    }

    /// `/iframe.html` (or `/iframe<anything>.html`): the page iframe-based
    /// transports run in, loading `[proxy] sockjs_url`; cached for a year,
    /// `304` for its `ETag`.
    async fn sockjs_iframe(&mut self, prepared: &Prepared) -> (u16, &'static str) {
        let page = iframe_page(&self.shared.sockjs_url);
        let etag = format!("\"{:016x}\"", fnv1a(page.as_bytes()));
        let mut headers = vec![
            header("ETag", etag.clone()),
            header("Cache-Control", "public, max-age=31536000"),
        ];
        let matches = prepared.headers.iter().any(|Header(n, v)| {
            n.eq_ignore_ascii_case("if-none-match") && v[..] == *etag.as_bytes()
        });
        if matches {
            self.respond(304, headers, Bytes::new()).await;
            return (304, "sockjs iframe");
        }
        headers.push(header("Content-Type", "text/html; charset=UTF-8"));
        self.respond(200, headers, Bytes::from(page)).await;
        (200, "sockjs iframe")
    }

    /// The WebSocket transport: the session's frames as text messages, the
    /// client's messages (a JSON array or string each) passed on.
    async fn sockjs_websocket(&mut self, prepared: &Prepared, key: &str) -> (u16, &'static str) {
        let session = self.sockjs_session(prepared, key);
        let mut accept = self.packet(PacketType::Data);
        accept.code = Some(101);
        accept.reason = Some("Switching Protocols".into());
        accept.headers = Some(Vec::new());
        accept.credits = Some(self.endpoint.offer(WS_WINDOW));
        self.send(accept).await;
        if !session.attach() {
            let frame = Frame::Close(2010, "Another connection still open".into());
            self.sockjs_ws_text(frame.encode()).await;
            self.sockjs_ws_close(3000).await;
            return (101, "sockjs busy");
        }
        let outcome = self.sockjs_ws_bridge(&session).await;
        session.detach();
        (101, outcome)
    }

    async fn sockjs_ws_bridge(&mut self, session: &SockSession) -> &'static str {
        let mut heartbeat = Instant::now() + HEARTBEAT;
        loop {
            let can_send = self.endpoint.can_send();
            let deadline = self.endpoint.next_deadline();
            tokio::select! {
                frame = session.next_frame(), if can_send => {
                    heartbeat = Instant::now() + HEARTBEAT;
                    let closing = matches!(frame, Frame::Close(..));
                    self.sockjs_ws_text(frame.encode()).await;
                    if closing {
                        self.sockjs_ws_close(3000).await;
                        return "sockjs session closed";
                    }
                }
                _ = sleep_until(heartbeat), if can_send => {
                    heartbeat = Instant::now() + HEARTBEAT;
                    self.sockjs_ws_text(Frame::Heartbeat.encode()).await;
                }
                packet = self.inbox.recv() => {
                    let Some(packet) = packet else { return "shutdown" };
                    if !self.take_in(&packet) {
                        return "bad seq";
                    }
                    match packet.kind() {
                        PacketType::Data => {
                            let body = packet.body.clone().unwrap_or_default();
                            let n = body.len();
                            match frames::messages(&body, true) {
                                Ok(messages) => {
                                    if !session.send(messages).await {
                                        return "sockjs session closed";
                                    }
                                }
                                // Not JSON: SockJS servers drop the connection.
                                Err(_) => {
                                    self.sockjs_ws_close(1002).await;
                                    session.close_by_client();
                                    return "sockjs bad message";
                                }
                            }
                            if let Some(credit) = self.endpoint.grant(n) {
                                self.send(credit).await;
                            }
                        }
                        PacketType::Ping => {
                            let mut pong = self.packet(PacketType::Pong);
                            pong.body = packet.body.clone();
                            self.send(pong).await;
                        }
                        PacketType::Close => {
                            session.close_by_client();
                            self.sockjs_ws_close(packet.code.unwrap_or(1000)).await;
                            return "closed by client";
                        }
                        PacketType::Cancel | PacketType::Error => {
                            return "client disconnected";
                        }
                        _ => {}
                    }
                }
                _ = sleep_until(deadline) => {
                    if !self.on_timer().await {
                        return "connmgr gone";
                    }
                }
            }
        }
    }

    async fn sockjs_ws_text(&mut self, text: String) {
        self.endpoint.spend(text.len());
        let mut packet = self.packet(PacketType::Data);
        packet.content_type = Some("text".into());
        packet.body = Some(Bytes::from(text));
        self.send(packet).await;
    }

    async fn sockjs_ws_close(&mut self, code: u16) {
        let mut packet = self.packet(PacketType::Close);
        packet.code = Some(code);
        self.send(packet).await;
    }

    async fn sockjs_plain(
        &mut self,
        prepared: &Prepared,
        code: u16,
        text: &str,
    ) -> (u16, &'static str) {
        let mut headers = common_headers(&prepared.headers);
        headers.push(header("Content-Type", "text/plain; charset=UTF-8"));
        self.respond(code, headers, Bytes::from(format!("{text}\n")))
            .await;
        (code, "sockjs")
    }
}

fn is_iframe(path: &str) -> bool {
    path.strip_prefix("/iframe")
        .and_then(|rest| rest.strip_suffix(".html"))
        .is_some_and(|middle| !middle.contains('/'))
}

/// The page of iframe-based transports (SockJS's own wording).
fn iframe_page(sockjs_url: &str) -> String {
    let src = serde_json::Value::String(sockjs_url.to_owned()).to_string();
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  <script src={src}></script>\n  <script>\n    document.domain = document.domain;\n    SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>\n"
    )
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The first of `names` in the request's query, decoded.
fn query_value(path: &str, names: &[&str]) -> Option<String> {
    let query = path.split_once('?')?.1;
    names
        .iter()
        .find_map(|name| form_value(query.as_bytes(), name))
}

/// A value of a form (`a=1&b=2`, `+` for space), decoded.
fn form_value(form: &[u8], name: &str) -> Option<String> {
    let form = std::str::from_utf8(form).ok()?;
    form.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// `entropy` of `/info`: a number clients may use to seed themselves.
fn rand_entropy() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_urls() {
        assert_eq!(session_url("/000/abc/xhr"), Some(("abc", "xhr")));
        assert_eq!(session_url("/000/abc/xhr/x"), None);
        assert_eq!(session_url("/000/a.b/xhr"), None);
        assert_eq!(session_url("//abc/xhr"), None);
        assert_eq!(session_url("/info"), None);
    }

    #[test]
    fn jsonp_and_iframe_helpers() {
        assert_eq!(
            &Transport::Jsonp("cb".into()).write(&Frame::Messages(vec!["x".into()]))[..],
            b"/**/cb(\"a[\\\"x\\\"]\");\r\n"
        );
        assert_eq!(
            query_value("/x?c=f.g&d=1", &["c", "callback"]).as_deref(),
            Some("f.g")
        );
        assert_eq!(
            form_value(b"d=%5B%22a+b%22%5D", "d").as_deref(),
            Some("[\"a b\"]")
        );
        assert!(valid_callback("_jp.a1b2") && !valid_callback("alert(1)"));
        assert!(
            is_iframe("/iframe.html")
                && is_iframe("/iframe-a1.html")
                && !is_iframe("/iframe/x.html")
        );
        assert!(
            iframe_page("https://cdn/x.js").contains("<script src=\"https://cdn/x.js\"></script>")
        );
    }

    #[test]
    fn transports_write_frames() {
        let frame = Frame::Messages(vec!["hi".into()]);
        assert_eq!(&Transport::Polling.write(&frame)[..], b"a[\"hi\"]\n");
        assert_eq!(
            &Transport::EventSource.write(&frame)[..],
            b"data: a[\"hi\"]\r\n\r\n"
        );
        assert_eq!(Transport::Streaming.prelude().len(), 2049);
    }
}
