//! One client request as a ZHTTP session with a proxy.
//!
//! [`handle`] checks the request against the limits, registers a session,
//! sends the first packet and spawns the session task, then waits for the
//! response head. The task owns the session's state: it streams the request
//! body within the proxy's credits, turns response packets into the hyper
//! response and its body, gives credits back as the client drains, sends
//! keep-alives, and cancels the proxy's side when the client goes away.

use crate::answer::plain;
use crate::config::Config;
use crate::limits::{DRAIN_MAX_BYTES, DRAIN_MAX_TIME, MAX_HEADERS, MAX_URI_LEN};
use crate::shared::Shared;
use bytes::Bytes;
use holdfast_protocol::zhttp::{
    is_hop_by_hop, Endpoint, Ext, Header, Packet, PacketType, SessionError,
};
use holdfast_protocol::zmq::{BodySink, FastPath, SessionState};
use holdfast_runtime::body::{
    body_channel, BodySender, Drained, HttpBody as ResponseBody, QueueError,
};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

pub(crate) fn check_limits(req: &Parts, config: &Config) -> Option<Response<ResponseBody>> {
    let uri_len = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_LEN {
        return Some(plain(
            StatusCode::URI_TOO_LONG,
            &format!("Request URI is {uri_len} bytes; the limit is {MAX_URI_LEN}."),
        ));
    }
    let hosts = req.headers.get_all(http::header::HOST).iter().count();
    if hosts > 1 {
        // Which one would route it? RFC 9112 3.2: answer 400.
        return Some(plain(
            StatusCode::BAD_REQUEST,
            &format!("Request has {hosts} Host headers; exactly one is allowed."),
        ));
    }
    if req.headers.len() > MAX_HEADERS {
        return Some(plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "Request has {} headers; the limit is {MAX_HEADERS}.",
                req.headers.len()
            ),
        ));
    }
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > config.max_body_size) {
        return Some(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "Request body is {len} bytes; the limit is {}.",
                config.max_body_size
            ),
        ));
    }
    None
}

/// Requests connmgr answers itself and never forwards: `CONNECT` (this is
/// a reverse proxy, not a tunnel) and `OPTIONS *` (a question about this
/// server, not about any resource of an origin).
pub(crate) fn local_answer(req: &Parts) -> Option<Response<ResponseBody>> {
    if req.method == http::Method::CONNECT {
        let mut resp = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported: this is a reverse proxy, not a tunnel.",
        );
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static(ALLOWED));
        return Some(resp);
    }
    if req.method == http::Method::OPTIONS && req.uri == "*" {
        let mut resp = Response::new(ResponseBody::full(Bytes::new()));
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static(ALLOWED));
        return Some(resp);
    }
    None
}

/// The methods forwarded to origins, for `Allow`.
const ALLOWED: &str = "OPTIONS, GET, HEAD, POST, PUT, PATCH, DELETE";

/// The hyper service: one request in, one response out.
pub async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
) -> Result<Response<ResponseBody>, Infallible> {
    let (parts, body) = req.into_parts();
    Ok(respond(parts, Some(body), shared, peer, tls).await)
}

/// One request in, one response out: from hyper (`body` is hyper's reader
/// of the request body) or from [`crate::lean`] (no body).
pub(crate) async fn respond(
    req: Parts,
    body: Option<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
) -> Response<ResponseBody> {
    let started = Instant::now();
    shared
        .metrics
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let line = format!("{} {}", req.method, req.uri);
    if let Some(resp) = check_limits(&req, &shared.config) {
        access_log(&line, peer, resp.status().as_u16(), 0, started, "refused");
        return resp;
    }
    if let Some(resp) = local_answer(&req) {
        access_log(&line, peer, resp.status().as_u16(), 0, started, "local");
        return resp;
    }
    let mut endpoint = Endpoint::new(shared.from.clone(), shared.new_id(), started);
    let websocket = crate::websocket::is_upgrade(&req.headers);
    let scheme = match (websocket, tls) {
        (true, true) => "wss",
        (true, false) => "ws",
        (false, true) => "https",
        (false, false) => "http",
    };
    let credits = endpoint.offer(shared.config.buffer_size);
    let has_body = body
        .as_ref()
        .is_some_and(|body| !http_body::Body::is_end_stream(body));
    let first = first_packet(&req, has_body, &endpoint, credits, peer, scheme);
    if websocket {
        // The upgrade is hyper's: the lean path hands handshakes to hyper.
        let Some(body) = body else {
            return plain(StatusCode::BAD_REQUEST, "Bad WebSocket handshake.");
        };
        let req = Request::from_parts(req, body);
        return crate::websocket::handle(req, shared, peer, endpoint, first).await;
    }
    let body = body.filter(|_| has_body);
    let inbox = shared.sockets.sessions().register(endpoint.id().to_owned());
    drop(req);
    let (head_tx, head_rx) = oneshot::channel();
    let first = Box::new(first);
    let session = Session {
        shared: shared.clone(),
        endpoint,
        inbox,
        state: Arc::new(SessionState::default()),
        fast_bytes: 0,
        body_total: 0,
        reply: Reply::Waiting(head_tx),
        drained: Arc::new(Drained::default()),
        status: 0,
        bytes_out: 0,
    };
    shared
        .tracker
        .spawn(session.run(first, body, line, peer, started));
    head_rx
        .await
        .unwrap_or_else(|_| plain(StatusCode::SERVICE_UNAVAILABLE, "Service is shutting down."))
}

fn access_log(
    line: &str,
    peer: SocketAddr,
    status: u16,
    bytes: u64,
    started: Instant,
    outcome: &str,
) {
    tracing::info!(
        "{line} -> {status} {bytes}B {}ms peer={peer} {outcome}",
        started.elapsed().as_millis()
    );
}

/// The first packet of a session: the request's head, `credits` of
/// response window, the client's address.
fn first_packet(
    req: &Parts,
    has_body: bool,
    endpoint: &Endpoint,
    credits: u32,
    peer: SocketAddr,
    scheme: &str,
) -> Packet {
    // An absolute-form target (or HTTP/2's :authority) names the site and
    // the Host header is replaced by it (RFC 9112 3.2.2), so routing and the
    // origin see the same host.
    let authority = req.uri.authority().map(|a| a.as_str());
    let host = authority
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("localhost");
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut headers: Vec<Header> = req
        .headers
        .iter()
        .filter(|(name, _)| authority.is_none() || *name != http::header::HOST)
        .map(|(name, value)| {
            Header(
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect();
    if let Some(authority) = authority {
        headers.insert(
            0,
            Header(
                "host".to_owned(),
                Bytes::copy_from_slice(authority.as_bytes()),
            ),
        );
    }
    Packet {
        method: Some(req.method.as_str().to_owned()),
        uri: Some(format!("{scheme}://{host}{path}")),
        headers: Some(headers),
        credits: Some(credits),
        more: has_body,
        stream: true,
        peer_address: Some(peer.ip().to_string()),
        peer_port: Some(peer.port()),
        ext: Some(Ext { multi: true }),
        ..endpoint.packet(PacketType::Data)
    }
}

/// Where the client's response stands.
enum Reply {
    /// Nothing sent yet; the head goes through here.
    Waiting(oneshot::Sender<Response<ResponseBody>>),
    /// Head sent; body chunks go through here.
    Streaming(BodySender),
    /// Complete, or abandoned.
    Done,
}

/// How a session ended, for the access log.
type Outcome = &'static str;

/// Whether the session goes on after handling an event.
enum Step {
    Continue,
    End(Outcome),
}

struct Session {
    shared: Arc<Shared>,
    /// Ids, sequence numbers, credits and liveness toward the owner.
    endpoint: Endpoint,
    inbox: mpsc::Receiver<Box<Packet>>,
    /// Shared with the fast path, which takes in-sequence body packets
    /// straight into the response (and moves the inbound sequence).
    state: Arc<SessionState>,
    /// Fast-path body bytes already counted in the endpoint.
    fast_bytes: u64,
    /// Request body bytes received from the client so far.
    body_total: u64,
    reply: Reply,
    drained: Arc<Drained>,
    status: u16,
    bytes_out: u64,
}

/// The last mile of a streaming response's fast path: in-sequence body
/// packets from the owner go straight into the response body.
struct ResponseSink(BodySender);

impl BodySink for ResponseSink {
    fn take(&self, body: &Bytes) -> bool {
        // Past the credits granted, or the client gone: the session's task
        // deals with it, through the inbox.
        self.0.push(body.clone()).is_ok()
    }
}

async fn next_frame(body: &mut Option<Incoming>) -> Option<Result<Frame<Bytes>, hyper::Error>> {
    match body {
        Some(body) => body.frame().await,
        None => std::future::pending().await,
    }
}

/// Reads and discards the rest of a refused request body for a while, so
/// the client, still sending, reads our early answer instead of a reset
/// (the lingering close web servers do).
async fn drain(mut body: Incoming) {
    let mut left = DRAIN_MAX_BYTES;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            if n >= left {
                return;
            }
            left -= n;
        }
    })
    .await;
}

async fn client_gone(reply: &mut Reply) {
    match reply {
        Reply::Waiting(tx) => tx.closed().await,
        Reply::Streaming(tx) => tx.closed().await,
        Reply::Done => std::future::pending().await,
    }
}

impl Session {
    /// Runs the session to its end, then writes its access-log line. This
    /// future is the whole task (a wrapper around it would keep a second
    /// copy of the session), and `first` comes boxed: an async fn keeps its
    /// arguments' space for its whole life, and a held session lives long.
    async fn run(
        mut self,
        first: Box<Packet>,
        mut body: Option<Incoming>,
        line: String,
        peer: SocketAddr,
        started: Instant,
    ) {
        let outcome = self.drive(first, &mut body).await;
        self.shared
            .sockets
            .sessions()
            .unregister(self.endpoint.id());
        let bytes = self.bytes_out + self.state.bytes.load(Ordering::Relaxed);
        access_log(&line, peer, self.status, bytes, started, outcome);
    }

    async fn drive(&mut self, first: Box<Packet>, body: &mut Option<Incoming>) -> Outcome {
        if self
            .shared
            .send_first(&mut self.endpoint, *first)
            .await
            .is_err()
        {
            self.fail(StatusCode::SERVICE_UNAVAILABLE, "Service is shutting down.");
            return "shutdown";
        }
        let mut pending = Bytes::new();
        // One timer for keep-alive and expiry, moved only when it fires: a
        // packet just notes the time (resetting a timer per packet costs a
        // timer-wheel update on every delivery of a fan-out).
        let timer = sleep_until(self.endpoint.next_deadline());
        tokio::pin!(timer);
        let mut reconnects = self.shared.sockets.reconnects();
        let drained = self.drained.clone();
        loop {
            let paused = self.endpoint.is_paused();
            let known = self.endpoint.peer().is_some();
            if !pending.is_empty() && known && !paused && self.endpoint.can_send() {
                let chunk = pending.split_to(self.endpoint.take_credits(pending.len()));
                let mut packet = self.endpoint.packet(PacketType::Data);
                packet.body = Some(chunk);
                packet.more = true;
                self.shared.send(&mut self.endpoint, packet).await;
                continue;
            }
            let can_read_body = body.is_some()
                && pending.is_empty()
                && known
                && !paused
                && self.endpoint.can_send();
            let step = tokio::select! {
                packet = self.inbox.recv() => match packet {
                    // Boxed, as is the timer's handler: the task's own
                    // size is what every held session pays for its life.
                    Some(packet) => Box::pin(self.on_packet(*packet)).await,
                    None => Step::End("shutdown"),
                },
                frame = next_frame(body), if can_read_body => match frame {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            self.body_total += data.len() as u64;
                            if self.body_total > self.shared.config.max_body_size {
                                let text = format!("Request body exceeds the limit of {} bytes.", self.shared.config.max_body_size);
                                self.fail(StatusCode::PAYLOAD_TOO_LARGE, &text);
                                self.cancel_owner().await;
                                if let Some(body) = body.take() {
                                    tokio::spawn(drain(body));
                                }
                                Step::End("body too large")
                            } else {
                                pending = data;
                                Step::Continue
                            }
                        }
                        Err(_trailers) => Step::Continue,
                    },
                    Some(Err(err)) => {
                        tracing::debug!(session = %self.endpoint.id(), error = %err, "client request body failed");
                        // A client that went away hears nothing; one that
                        // sent a malformed body (a bad chunk size line) is
                        // told so, whatever the origin has seen of it.
                        self.fail(StatusCode::BAD_REQUEST, &format!("Request body is malformed: {err}."));
                        self.cancel_owner().await;
                        Step::End(if err.is_incomplete_message() { "client aborted" } else { "malformed body" })
                    }
                    None => {
                        *body = None;
                        let mut packet = self.endpoint.packet(PacketType::Data);
                        packet.body = Some(Bytes::new());
                        self.shared.send(&mut self.endpoint, packet).await;
                        Step::Continue
                    }
                },
                // Credits go back in half-window batches, not per write.
                n = drained.take_at_least(self.shared.config.buffer_size / 2), if !paused => {
                    let credit = self.endpoint.grant(n);
                    self.send_if_any(credit).await;
                    Step::Continue
                }
                Ok(peer) = reconnects.recv(), if !paused => {
                    // Our owner (re)connected: if it restarted, it does not
                    // know us and answers this with cancel.
                    if self.endpoint.peer().map(str::as_bytes) == Some(peer.as_slice()) {
                        let packet = self.endpoint.packet(PacketType::KeepAlive);
                        self.shared.send(&mut self.endpoint, packet).await;
                    }
                    Step::Continue
                }
                _ = &mut timer => Box::pin(self.on_timer(timer.as_mut())).await,
                _ = client_gone(&mut self.reply) => {
                    self.reply = Reply::Done;
                    self.cancel_owner().await;
                    Step::End("client disconnected")
                }
            };
            if let Step::End(outcome) = step {
                return outcome;
            }
        }
    }

    /// Keep-alive and expiry; re-arms the timer.
    async fn on_timer(&mut self, timer: std::pin::Pin<&mut tokio::time::Sleep>) -> Step {
        let now = Instant::now();
        if self.state.heard.swap(false, Ordering::Relaxed) {
            self.endpoint.heard(now);
        }
        if self.endpoint.expired(now) {
            tracing::warn!(session = %self.endpoint.id(), "owner silent for {}s: session expired", holdfast_protocol::zhttp::SESSION_EXPIRY.as_secs());
            self.fail(StatusCode::BAD_GATEWAY, "The proxy did not answer in time.");
            self.cancel_owner().await;
            return Step::End("expired");
        }
        if self.endpoint.keep_alive_due(now) {
            let packet = self.endpoint.packet(PacketType::KeepAlive);
            self.shared.send(&mut self.endpoint, packet).await;
        }
        timer.reset(self.endpoint.next_deadline());
        Step::Continue
    }

    async fn on_packet(&mut self, packet: Packet) -> Step {
        // The fast path may have taken packets before this one.
        self.endpoint
            .sync_in_seq(self.state.in_seq.load(Ordering::Acquire));
        let fast = self.state.bytes.load(Ordering::Relaxed);
        self.endpoint.received_elsewhere(fast - self.fast_bytes);
        self.fast_bytes = fast;
        let received = self.endpoint.receive(&packet, Instant::now());
        self.state
            .in_seq
            .store(self.endpoint.seqs().0, Ordering::Release);
        if let Err(err) = received {
            return self.protocol_error(&err).await;
        }
        match packet.kind() {
            PacketType::Data => self.on_data(packet),
            PacketType::Credit | PacketType::KeepAlive => Step::Continue,
            PacketType::HandoffStart => {
                self.shared
                    .sockets
                    .sessions()
                    .set_fast_path(self.endpoint.id(), None);
                let proceed = self.endpoint.packet(PacketType::HandoffProceed);
                self.shared.send(&mut self.endpoint, proceed).await;
                self.endpoint.pause();
                Step::Continue
            }
            PacketType::Cancel => {
                self.fail(StatusCode::BAD_GATEWAY, "The proxy cancelled the request.");
                Step::End("cancelled by proxy")
            }
            PacketType::Error => {
                let condition = packet.condition.as_deref().unwrap_or("undefined-condition");
                tracing::debug!(session = %self.endpoint.id(), condition, "proxy ended the session with an error");
                self.fail(
                    StatusCode::BAD_GATEWAY,
                    &format!("Error while proxying: {condition}."),
                );
                Step::End("error from proxy")
            }
            other => {
                tracing::debug!(session = %self.endpoint.id(), kind = ?other, "packet type not used on HTTP sessions; ignored");
                Step::Continue
            }
        }
    }

    /// The owner broke the protocol (a packet out of order, body past its
    /// credits): the client gets a 502 (or a cut body), the owner a cancel.
    async fn protocol_error(&mut self, err: &SessionError) -> Step {
        tracing::warn!(session = %self.endpoint.id(), "{err}");
        self.fail(
            StatusCode::BAD_GATEWAY,
            "Protocol error between connmgr and proxy.",
        );
        self.cancel_owner().await;
        Step::End("protocol error")
    }

    fn on_data(&mut self, packet: Packet) -> Step {
        let body = packet.body.unwrap_or_default();
        match std::mem::replace(&mut self.reply, Reply::Done) {
            Reply::Waiting(head_tx) => {
                let Some(code) = packet.code else {
                    tracing::warn!(session = %self.endpoint.id(), "first response packet has no code");
                    self.reply = Reply::Waiting(head_tx);
                    self.fail(
                        StatusCode::BAD_GATEWAY,
                        "Protocol error between connmgr and proxy.",
                    );
                    return Step::End("bad response");
                };
                let mut builder = Response::builder().status(code);
                for Header(name, value) in packet.headers.unwrap_or_default() {
                    if is_hop_by_hop(&name) {
                        continue;
                    }
                    match (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_maybe_shared(value),
                    ) {
                        (Ok(name), Ok(value)) => builder = builder.header(name, value),
                        _ => {
                            tracing::debug!(session = %self.endpoint.id(), header = %name, "invalid response header dropped")
                        }
                    }
                }
                if let Some(reason) = packet.reason.as_deref() {
                    let canonical = http::StatusCode::from_u16(code)
                        .ok()
                        .and_then(|s| s.canonical_reason());
                    if canonical != Some(reason) {
                        if let Ok(reason) =
                            hyper::ext::ReasonPhrase::try_from(reason.as_bytes().to_vec())
                        {
                            builder = builder.extension(reason);
                        }
                    }
                }
                self.status = code;
                self.bytes_out += body.len() as u64;
                if !packet.more {
                    let resp = builder.body(ResponseBody::Full(Some(body)));
                    return self.send_head(head_tx, resp, Reply::Done);
                }
                // What waits in the body is bounded by the window we offered.
                let (tx, rx) = body_channel(self.shared.config.buffer_size, self.drained.clone());
                if tx.push(body).is_err() {
                    tracing::warn!(session = %self.endpoint.id(), "proxy sent beyond its credits");
                    return Step::End("protocol error");
                }
                let resp = builder.body(ResponseBody::Stream(rx));
                if let Some(owner) = self.endpoint.peer() {
                    let fast = FastPath {
                        body: Arc::new(ResponseSink(tx.clone())),
                        owner: owner.to_owned(),
                        state: self.state.clone(),
                    };
                    self.shared
                        .sockets
                        .sessions()
                        .set_fast_path(self.endpoint.id(), Some(fast));
                }
                self.send_head(head_tx, resp, Reply::Streaming(tx))
            }
            Reply::Streaming(tx) => {
                self.bytes_out += body.len() as u64;
                match tx.push(body) {
                    Ok(()) => {}
                    Err(QueueError::Full) => {
                        tracing::warn!(session = %self.endpoint.id(), "proxy sent beyond its credits");
                        return Step::End("protocol error");
                    }
                    Err(QueueError::Closed) => return Step::End("client disconnected"),
                }
                if packet.more {
                    self.reply = Reply::Streaming(tx);
                    Step::Continue
                } else {
                    Step::End("ok")
                }
            }
            Reply::Done => Step::End("ok"),
        }
    }

    fn send_head(
        &mut self,
        head_tx: oneshot::Sender<Response<ResponseBody>>,
        resp: Result<Response<ResponseBody>, http::Error>,
        next: Reply,
    ) -> Step {
        let resp = resp.unwrap_or_else(|err| {
            tracing::warn!(session = %self.endpoint.id(), error = %err, "unusable response head from proxy");
            self.status = 502;
            plain(StatusCode::BAD_GATEWAY, "Invalid response from the proxy.")
        });
        if head_tx.send(resp).is_err() {
            return Step::End("client disconnected");
        }
        let done = matches!(next, Reply::Done);
        self.reply = next;
        if done {
            Step::End("ok")
        } else {
            Step::Continue
        }
    }

    /// Ends the client's response with an error: a status if nothing was
    /// sent yet, otherwise by cutting the body short.
    fn fail(&mut self, status: StatusCode, text: &str) {
        match std::mem::replace(&mut self.reply, Reply::Done) {
            Reply::Waiting(tx) => {
                self.status = status.as_u16();
                let _ = tx.send(plain(status, text));
            }
            Reply::Streaming(tx) => tx.fail(io::Error::other(text.to_owned())),
            Reply::Done => {}
        }
    }

    /// Not an async fn: its future would hold the cancel packet, and every
    /// session's future would be sized for it.
    fn cancel_owner(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let cancel = self.endpoint.cancel();
        self.send_if_any(cancel)
    }

    fn send_if_any(
        &mut self,
        packet: Option<Packet>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        match packet {
            Some(packet) => self.shared.send(&mut self.endpoint, packet),
            None => Box::pin(std::future::ready(())),
        }
    }
}
