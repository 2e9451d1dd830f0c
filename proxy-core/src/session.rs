//! One client request as a ZHTTP session: route it, forward it to the origin
//! (failing over between targets), and stream the answer back to connmgr
//! within its credits, while feeding the request body to the origin as
//! connmgr sends it within ours. The session's side of ZHTTP (sequence
//! numbers, credits, keep-alive) is a `zhttp::Endpoint`.
//!
//! WebSocket sessions: `websocket` (passthrough to a WebSocket origin),
//! `over_http` (WebSocket-over-HTTP), `grip_ws` (GRIP on either), and
//! `ws_client` (what waits for the client, within connmgr's credits);
//! `sockjs` (SockJS endpoints, their sessions toward WebSocket origins);
//! `forward` sends a request to the route's targets; `cached` answers
//! from the edge cache.

use crate::error::ProxyError;
use crate::origin::body::OriginBody;
use crate::origin::headers::{is_tls, ForwardRules};
use crate::routes::Proto;
use crate::routes::RequestInfo;
use crate::routes::{Route, RouteTable};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use holdfast_grip::answer::{self, Answer};
use holdfast_grip::client::OriginClient;
use holdfast_grip::instruct::Instruct;
use holdfast_grip::sign::{Signer, Verifier};
use holdfast_protocol::format;
use holdfast_protocol::handoff;
use holdfast_protocol::inspect::Inspected;
use holdfast_protocol::zhttp::{Endpoint, Header, Packet, PacketType, MAX_FROM_LEN};
use holdfast_protocol::zmq::link::Link as Sockets;
use holdfast_protocol::zmq::session_key;
use holdfast_protocol::zmq::Multipart;
use holdfast_runtime::body::{body_channel, BodySender, ChannelBody, Drained};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::task::TaskTracker;

mod cached;
mod forward;
mod grip_ws;
mod over_http;
mod sockjs;
mod websocket;
mod ws_client;

use forward::{forward, signer_for, Forwarded};
pub use grip_ws::WsRoutes;
pub use sockjs::Registry as SockJsSessions;

/// Request body bytes connmgr may send before we grant more. Large enough to
/// keep an upload flowing across one round trip of credit packets.
pub const REQUEST_WINDOW: u32 = 128 * 1024;

/// How long connmgr may take to answer `handoff-start`.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a WebSocket's closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a WebSocket session with GRIP tells the handler it still
/// exists (the handler forgets sessions not heard of for 2 minutes).
const VOUCH_INTERVAL: Duration = Duration::from_secs(45);

/// State shared by every session.
pub struct Shared {
    /// Sockets toward connmgr.
    pub sockets: Arc<Sockets>,
    /// Our id, the `from` of every packet (shared by every session).
    pub from: Arc<str>,
    /// Largest WebSocket message taken from an origin.
    pub max_message_size: usize,
    /// Current routes; replaced whole on reload. The lock is held only to
    /// clone the `Arc`.
    pub routes: RwLock<Arc<RouteTable>>,
    /// Pooled origin client.
    pub client: OriginClient,
    /// X-Forwarded-* policy.
    pub rules: ForwardRules,
    /// Default signer (`sig_iss`, `sig_key`).
    pub signer: Signer,
    /// Verifier for trusted upstream clients (`upstream_key`).
    pub upstream: Option<Verifier>,
    /// Detailed error bodies.
    pub debug: bool,
    /// `aco` on every route.
    pub auto_cross_origin: bool,
    /// The edge cache, for routes with `cache`.
    pub cache: Arc<crate::cache::Cache>,
    /// Counters and gauges.
    pub metrics: crate::metrics::Metrics,
    /// Session tasks.
    pub tracker: TaskTracker,
    /// Where held sessions go (the handler's accept socket), if anywhere.
    pub handler: Option<mpsc::Sender<Multipart>>,
    /// Where WebSocket sessions' GRIP control goes (the handler), if anywhere.
    pub ws_control: Option<mpsc::Sender<Multipart>>,
    /// WebSocket sessions with GRIP, for the handler's deliveries.
    pub ws_routes: WsRoutes,
    /// Asks the handler for requests' client sessions (`session` routes).
    pub inspector: Option<crate::inspect::Inspector>,
    /// Live SockJS sessions (routes with `sockjs`).
    pub sockjs: SockJsSessions,
    /// The SockJS client library the iframe page loads.
    pub sockjs_url: String,
}

impl Shared {
    fn routes(&self) -> Arc<RouteTable> {
        self.routes.read().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Starts a session for the first packet of a request.
pub fn start(shared: &Arc<Shared>, frame: &[u8]) {
    let first: Packet = match format::decode(frame) {
        Ok(packet) => packet,
        Err(err) => {
            tracing::warn!(error = %err, "undecodable request packet dropped");
            return;
        }
    };
    let (Some(from), Some(id)) = (first.from.clone(), first.single_id().map(str::to_owned)) else {
        tracing::warn!("request packet without from or id dropped");
        return;
    };
    if from.len() > MAX_FROM_LEN || first.kind() != &PacketType::Data {
        tracing::warn!(%from, "request packet with an oversized from or a non-data type dropped");
        return;
    }
    let key = session_key(Some(&from), &id);
    shared
        .metrics
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut endpoint = Endpoint::new(shared.from.clone(), id, Instant::now());
    if let Err(err) = endpoint.receive(&first, Instant::now()) {
        tracing::warn!(%from, "request packet refused: {err}");
        return;
    }
    let session = Session::new(shared, from, endpoint, key, first.peer_address.clone());
    shared.tracker.spawn(Box::new(session).run(Box::new(first)));
}

/// Starts a WebSocket session whose peer is in this process (a SockJS
/// session standing for its client): `first` is the request as connmgr
/// would send it, from `from`; the session's packets go to `to_peer`,
/// its peer's come through the session table like connmgr's; `route` is
/// used as it is (no routing by path).
fn start_local(
    shared: &Arc<Shared>,
    first: Packet,
    from: &str,
    to_peer: mpsc::Sender<Packet>,
    route: Route,
) -> Result<(), ProxyError> {
    let id = first
        .single_id()
        .ok_or_else(|| ProxyError::BadRequest("local session without an id".into()))?
        .to_owned();
    let key = session_key(Some(from), &id);
    let mut endpoint = Endpoint::new(shared.from.clone(), id, Instant::now());
    endpoint
        .receive(&first, Instant::now())
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    let mut session = Session::new(
        shared,
        from.to_owned(),
        endpoint,
        key,
        first.peer_address.clone(),
    );
    session.local = Some(to_peer);
    session.route = Some(Box::new(route));
    shared.tracker.spawn(Box::new(session).run(Box::new(first)));
    Ok(())
}

struct Session {
    shared: Arc<Shared>,
    /// connmgr's id: where our packets go (the session table's key
    /// qualifies ids by it).
    connmgr: String,
    /// Ids, sequence numbers, credits and liveness toward connmgr.
    endpoint: Endpoint,
    key: String,
    inbox: mpsc::Receiver<Box<Packet>>,
    /// Request body toward the origin, while it is still arriving.
    body_tx: Option<BodySender>,
    /// Request body bytes the origin has taken (become credits for connmgr).
    drained: Arc<Drained>,
    /// The request as received, for a hand-over to the handler (which may
    /// replay it); `None` once a streamed body outgrew [`REPLAY_MAX`].
    request: Option<handoff::Request>,
    /// A streamed body is still arriving (the request is not complete).
    body_open: bool,
    /// The client's address.
    peer: Option<String>,
    /// WebSocket: messages for the client waiting for connmgr's credits
    /// (whatever produced them, origin, publishes or timers, waits while
    /// this is not empty).
    to_client: VecDeque<Packet>,
    /// WebSocket: where the closing handshake stands with the client.
    client_close: ClientClose,
    /// The route's `log_level`, once the request is routed.
    log_level: Option<u8>,
    /// A peer in this process (a SockJS session), instead of connmgr.
    local: Option<mpsc::Sender<Packet>>,
    /// The route, when the peer chose it (no routing by path). Boxed: only
    /// SockJS sessions have one, and every session would carry its room.
    route: Option<Box<Route>>,
}

/// What becomes of a line about a request, given its route's `log_level`
/// (Pushpin's levels: 0 error, 1 warning, 2 info, 3 debug, 4 trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteLog {
    /// Below the route's level: not written.
    Quiet,
    /// Written at its own level (no route level, or the same decision).
    AsIs,
    /// A debug line the route asked for: written at info, so the process's
    /// own level does not hide it.
    Lifted,
}

fn route_log(route_level: Option<u8>, level: u8) -> RouteLog {
    match route_level {
        None => RouteLog::AsIs,
        Some(route) if level > route => RouteLog::Quiet,
        Some(_) if level >= 3 => RouteLog::Lifted,
        Some(_) => RouteLog::AsIs,
    }
}

/// A WebSocket's closing handshake, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientClose {
    /// No close either way yet.
    Open,
    /// The client closed (with this code, if any) and has no answer yet:
    /// a connection manager that waits for the owner's close (Pushpin's
    /// condure) keeps the client waiting until one comes.
    Received(Option<u16>),
    /// A close for the client is queued or sent.
    Answered,
}

/// Everything needed to send the request, owned so the future is `'static`.
struct Prepared {
    route: Route,
    method: http::Method,
    path: String,
    headers: Vec<Header>,
    peer: Option<String>,
    tls: bool,
    trusted: bool,
    body: Option<Bytes>,
    streaming_body: Option<ChannelBody>,
    /// A WebSocket handshake (`ws://`/`wss://`).
    websocket: bool,
    /// The request's host, lower case, without port.
    host: String,
    /// Its client session, for routes with `session`.
    session: Option<Inspected>,
    /// Route `aco` (or `auto_cross_origin`): CORS headers, or JSON-P.
    cross_origin: Option<handoff::CrossOrigin>,
}

impl Prepared {
    /// The same request again (a background refresh), when its body came
    /// whole.
    fn replay(&self) -> Option<Prepared> {
        if self.streaming_body.is_some() {
            return None;
        }
        Some(Prepared {
            route: self.route.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            headers: self.headers.clone(),
            peer: self.peer.clone(),
            tls: self.tls,
            trusted: self.trusted,
            body: self.body.clone(),
            streaming_body: None,
            websocket: self.websocket,
            host: self.host.clone(),
            session: self.session.clone(),
            cross_origin: self.cross_origin.clone(),
        })
    }
}

/// Where the response stands.
enum Phase {
    /// Waiting for the origin's response head.
    Head(BoxFuture<'static, Result<Forwarded, ProxyError>>),
    /// Streaming the origin's body; `head` is a response packet not yet sent
    /// (held back when the body is small and known, to send it whole).
    Body {
        body: Option<OriginBody>,
        head: Option<Box<Packet>>,
        pending: Bytes,
    },
}

/// Largest relayed body wrapped as JSON-P (it is read whole first).
const JSONP_MAX_BODY: usize = 1_000_000;

/// An answer shaped for a browser on another origin (route `aco`): wrapped
/// as JSON-P when the request was one, else with CORS headers. Held
/// answers are left to the handler, which shapes what it sends.
async fn cross_origin_answer(
    answer: Answer<OriginBody>,
    shape: &handoff::CrossOrigin,
    request: &[Header],
) -> Result<Answer<OriginBody>, ProxyError> {
    use holdfast_grip::cross_origin::{apply_cors, jsonp_wrap};
    let (code, reason, mut headers, body) = match answer {
        Answer::Relay {
            code,
            reason,
            mut headers,
            body,
        } => {
            let Some(jsonp) = &shape.jsonp else {
                apply_cors(request, &mut headers);
                return Ok(Answer::Relay {
                    code,
                    reason,
                    headers,
                    body,
                });
            };
            let whole = http_body_util::Limited::new(body, JSONP_MAX_BODY);
            let body = tokio::time::timeout(HANDOFF_TIMEOUT, whole.collect())
                .await
                .map_err(|_| holdfast_grip::GripError::Body("answer body took too long".into()))?
                .map_err(|e| {
                    holdfast_grip::GripError::Body(format!(
                        "answer body unreadable or over {JSONP_MAX_BODY} bytes, cannot be JSON-P encoded: {e}"
                    ))
                })?
                .to_bytes();
            let reason = reason.unwrap_or_default();
            let (headers, body) = jsonp_wrap(jsonp, code, &reason, &headers, &body);
            return Ok(Answer::Whole {
                code: 200,
                reason: Some("OK".into()),
                headers,
                body,
            });
        }
        Answer::Whole {
            code,
            reason,
            headers,
            body,
        } => (code, reason, headers, body),
        hold @ Answer::Hold { .. } => return Ok(hold),
    };
    match &shape.jsonp {
        Some(jsonp) => {
            let (headers, body) = jsonp_wrap(
                jsonp,
                code,
                reason.as_deref().unwrap_or(""),
                &headers,
                &body,
            );
            Ok(Answer::Whole {
                code: 200,
                reason: Some("OK".into()),
                headers,
                body,
            })
        }
        None => {
            apply_cors(request, &mut headers);
            Ok(Answer::Whole {
                code,
                reason,
                headers,
                body,
            })
        }
    }
}

/// A hold ready to go to the handler: everything the hand-over carries
/// besides the session's own state.
struct PendingHold {
    handler: mpsc::Sender<Multipart>,
    request: handoff::Request,
    instruct: Box<Instruct>,
    /// For a `started` stream: the head (already sent) and no body.
    response: handoff::Response,
    origin: Option<handoff::Origin>,
    prefix: String,
    session: Option<holdfast_protocol::inspect::SessionUpdate>,
    /// The proxy sent the head and the initial body itself.
    started: bool,
    /// Route `aco`: the handler shapes held responses too.
    cross_origin: Option<handoff::CrossOrigin>,
}

/// What moved on the origin side.
enum OriginEvent {
    Head(Result<Forwarded, ProxyError>),
    Frame(Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>),
}

/// Waits for the origin's head, or its next body frame when `can_read`.
async fn origin_event(phase: &mut Phase, can_read: bool) -> OriginEvent {
    match phase {
        Phase::Head(fut) => OriginEvent::Head(fut.await),
        Phase::Body {
            body: Some(body), ..
        } if can_read => OriginEvent::Frame(body.frame().await),
        Phase::Body { .. } => std::future::pending().await,
    }
}

impl Session {
    /// A session with its peer `from` (connmgr's id), registered in the
    /// session table under `key`.
    fn new(
        shared: &Arc<Shared>,
        from: String,
        endpoint: Endpoint,
        key: String,
        peer: Option<String>,
    ) -> Session {
        let inbox = shared.sockets.sessions().register(key.clone());
        Session {
            shared: shared.clone(),
            connmgr: from,
            endpoint,
            key,
            inbox,
            body_tx: None,
            drained: Arc::new(Drained::default()),
            request: None,
            body_open: false,
            peer,
            to_client: VecDeque::new(),
            client_close: ClientClose::Open,
            log_level: None,
            local: None,
            route: None,
        }
    }

    /// The session and `first` come boxed: an async fn keeps its
    /// arguments' room for its whole life (and a session by value was
    /// kept twice, as the argument and as the local it moves into).
    async fn run(mut self: Box<Self>, first: Box<Packet>) {
        let started = Instant::now();
        let line = format!(
            "{} {}",
            first.method.as_deref().unwrap_or("-"),
            first.uri.as_deref().unwrap_or("-")
        );
        let local = self.local.is_some();
        // Each kind of session is boxed: this task lives as long as the
        // session, and unboxed it would be sized for the largest kind
        // (12 KiB in all), whichever it runs. So is what was prepared,
        // and each step's future is made in a statement of its own (a
        // temporary lives to the end of its statement, await included).
        let prepared = Box::pin(self.prepare(*first)).await.map(Box::new);
        let (status, outcome) = match prepared {
            Ok(prepared) if !local && sockjs::applies(&prepared) => {
                let step = Box::pin(self.sockjs(*prepared));
                step.await
            }
            Ok(prepared) if prepared.websocket => {
                // Kept for a hand-over to the handler, which a WebSocket
                // never has: not worth its bytes for the connection's life.
                self.request = None;
                let gauge = self.shared.metrics.websockets.clone();
                gauge.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let outcome = if prepared.route.targets.iter().any(|t| t.over_http) {
                    Box::pin(self.over_http(prepared)).await
                } else {
                    Box::pin(self.websocket(prepared)).await
                };
                gauge.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                outcome
            }
            Ok(prepared) if cached::is_purge(&prepared) => {
                let (code, text) = cached::purge(&self.shared, &prepared);
                drop(prepared);
                Box::pin(self.respond_text(code, &text)).await;
                (code, "purge")
            }
            Ok(prepared) => {
                let step = Box::pin(self.proxy(*prepared));
                step.await
            }
            Err(err) => {
                let code = Box::pin(self.fail(&err)).await;
                (code, "refused")
            }
        };
        self.shared.sockets.sessions().unregister(&self.key);
        let elapsed = started.elapsed().as_millis();
        match route_log(self.log_level, 3) {
            RouteLog::Quiet => {}
            RouteLog::AsIs => tracing::debug!("{line} -> {status} {elapsed}ms {outcome}"),
            RouteLog::Lifted => tracing::info!("{line} -> {status} {elapsed}ms {outcome}"),
        }
    }

    async fn prepare(&mut self, first: Packet) -> Result<Prepared, ProxyError> {
        let method = first
            .method
            .as_deref()
            .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
            .ok_or_else(|| ProxyError::BadRequest("missing or invalid method".into()))?;
        let uri: http::Uri = first
            .uri
            .as_deref()
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| ProxyError::BadRequest("missing or invalid uri".into()))?;
        let headers = first.headers.clone().unwrap_or_default();
        let host = first
            .header("host")
            .and_then(|h| std::str::from_utf8(h).ok())
            .or(uri.authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_owned();
        let host_only = strip_port(&host).to_ascii_lowercase();
        let path = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let scheme_tls = matches!(uri.scheme_str(), Some("https") | Some("wss"));
        let tls = is_tls(scheme_tls, &headers, &self.shared.rules);
        let proto = if matches!(uri.scheme_str(), Some("ws") | Some("wss")) {
            Proto::Ws
        } else {
            Proto::Http
        };
        let route = match self.route.take() {
            Some(route) => *route,
            None => self
                .shared
                .routes()
                .find(RequestInfo {
                    host: &host_only,
                    path: &path,
                    ssl: tls,
                    proto,
                })
                .cloned()
                .ok_or(ProxyError::NoRoute {
                    host: host.clone(),
                    path: path.clone(),
                })?,
        };
        self.log_level = route.log_level;
        let trusted = match (&self.shared.upstream, first.header("grip-sig")) {
            (Some(verifier), Some(sig)) => {
                std::str::from_utf8(sig).is_ok_and(|s| verifier.verify(s))
            }
            _ => false,
        };
        let mut body = first.body.clone().filter(|b| !b.is_empty());
        let (mut method, mut path, mut headers, mut uri) = (method, path, headers, uri.to_string());
        let cross_origin = if (route.aco || self.shared.auto_cross_origin) && proto == Proto::Http {
            match crate::origin::jsonp::rewrite(&route.jsonp, &method, &path, &headers) {
                Ok(None) => Some(handoff::CrossOrigin::default()),
                Ok(Some(jsonp)) => {
                    uri = format!(
                        "{}://{host}{}",
                        uri.split("://").next().unwrap_or("http"),
                        jsonp.path
                    );
                    (method, path, headers, body) =
                        (jsonp.method, jsonp.path, jsonp.headers, jsonp.body);
                    Some(handoff::CrossOrigin {
                        jsonp: Some(jsonp.jsonp),
                    })
                }
                Err(reason) => return Err(ProxyError::BadRequest(reason)),
            }
        } else {
            None
        };
        self.request = Some(handoff::Request {
            method: method.as_str().to_owned(),
            uri,
            headers: headers.clone(),
            body: body.clone().unwrap_or_default(),
        });
        self.body_open = first.more;
        let streaming_body = if first.more {
            // What waits for the origin is bounded by the window we grant
            // (and the first packet's body, sent unasked).
            let first_len = body.as_ref().map_or(0, Bytes::len);
            let (tx, rx) = body_channel(REQUEST_WINDOW as usize + first_len, self.drained.clone());
            if let Some(body) = &body {
                let _ = tx.push(body.clone());
            }
            self.body_tx = Some(tx);
            if let Some(credit) = self.endpoint.grant(REQUEST_WINDOW as usize) {
                self.send(credit).await;
            }
            Some(rx)
        } else {
            None
        };
        Ok(Prepared {
            route,
            method,
            path,
            headers,
            peer: first.peer_address.clone(),
            tls,
            trusted,
            body: if streaming_body.is_some() { None } else { body },
            streaming_body,
            websocket: proto == Proto::Ws,
            host: host_only,
            session: None,
            cross_origin,
        })
    }

    async fn proxy(&mut self, mut prepared: Prepared) -> (u16, &'static str) {
        if prepared.route.session && self.shared.inspector.is_some() {
            // The session id is looked for in the whole body: wait for it
            // (it is queued for the origin meanwhile).
            if let Err(outcome) = self.finish_body().await {
                return (0, outcome);
            }
            let body = self.request.as_ref().filter(|_| !self.body_open);
            if let (Some(inspector), Some(request)) = (&self.shared.inspector, body) {
                prepared.session = inspector
                    .inspect(&prepared.host, &prepared.path, request.body.clone())
                    .await;
            }
            tracing::debug!(session = %self.endpoint.id(), sid = ?prepared.session.as_ref().and_then(|s| s.sid.as_deref()), "client session inspected");
        }
        let session_host = prepared.route.session.then(|| prepared.host.clone());
        let trusted = prepared.trusted;
        let grip = !prepared.route.no_grip;
        let prefix = prepared.route.prefix.clone().unwrap_or_default();
        let debug = self.shared.debug || prepared.route.debug;
        let cross_origin = prepared.cross_origin.clone();
        let client_headers = cross_origin.as_ref().map(|_| prepared.headers.clone());
        let fetch: BoxFuture<'static, Result<Forwarded, ProxyError>> = if cached::applies(&prepared)
        {
            Box::pin(cached::forward_cached(self.shared.clone(), prepared))
        } else {
            Box::pin(forward(self.shared.clone(), prepared))
        };
        let mut phase = Phase::Head(fetch);
        // A stream hold whose initial body streams first; handed over at
        // its end.
        let mut then_hold: Option<PendingHold> = None;
        let mut status = 0u16;
        let timer = sleep_until(self.endpoint.next_deadline());
        tokio::pin!(timer);
        let drained = self.drained.clone();
        loop {
            // Send what connmgr has room for before waiting on anything.
            if let Phase::Body {
                pending,
                head,
                body,
            } = &mut phase
            {
                if !pending.is_empty() && (self.endpoint.can_send() || head.is_some()) {
                    let chunk = pending.split_to(self.endpoint.take_credits(pending.len()));
                    let done =
                        pending.is_empty() && body.as_ref().is_none_or(|b| b.is_end_stream());
                    let mut packet = head
                        .take()
                        .map(|h| *h)
                        .unwrap_or_else(|| self.packet(PacketType::Data));
                    packet.body = Some(chunk);
                    packet.more = !done || then_hold.is_some();
                    self.send(packet).await;
                    if done {
                        return self.body_sent(status, then_hold.take()).await;
                    }
                    continue;
                }
            }
            let can_read = matches!(&phase, Phase::Body { pending, .. } if pending.is_empty())
                && (self.endpoint.can_send()
                    || matches!(&phase, Phase::Body { head: Some(_), .. }));
            tokio::select! {
                event = origin_event(&mut phase, can_read) => match event {
                OriginEvent::Head(result) => {
                    let (answer, origin) = match result {
                        Ok(Forwarded { response, origin }) => {
                            (answer::interpret(response, grip && !trusted).await.map_err(ProxyError::from), Some(origin))
                        }
                        Err(err) => (Err(err), None),
                    };
                    let answer = match (answer, &cross_origin, &client_headers) {
                        (Ok(answer), Some(shape), Some(request)) => cross_origin_answer(answer, shape, request).await,
                        (answer, _, _) => answer,
                    };
                    let (code, reason, headers, body, pending) = match answer {
                        Ok(Answer::Relay { code, reason, headers, body }) => (code, reason, headers, Some(body), Bytes::new()),
                        Ok(Answer::Whole { code, reason, headers, body }) => (code, reason, headers, None, body),
                        Ok(Answer::Hold { instruct, response, rest }) => {
                            let origin = origin.map(|mut o| { o.prefix = prefix.clone(); o });
                            let session = session_host.as_deref().and_then(|host| answer::session_of(&instruct, &prefix, host));
                            let (handler, request) = match self.prepare_hand_over(response.code, debug).await {
                                Ok(ready) => ready,
                                Err(ended) => return ended,
                            };
                            let mut hold = PendingHold { handler, request, instruct, response, origin, prefix: prefix.clone(), session, started: false, cross_origin: cross_origin.clone() };
                            let Some(rest) = rest else {
                                return self.hand_over(hold).await;
                            };
                            // The head and the body go out from here, as
                            // for a relayed answer; the hold follows.
                            let start = std::mem::take(&mut hold.response.body);
                            let mut head = (hold.response.code, Some(hold.response.reason.clone()), hold.response.headers.clone());
                            if let Some(request) = &client_headers {
                                holdfast_grip::cross_origin::apply_cors(request, &mut head.2);
                            }
                            hold.started = true;
                            then_hold = Some(hold);
                            (head.0, head.1, head.2, Some(rest), start)
                        }
                        Err(err) => {
                            status = self.fail_with(&err, debug).await;
                            return (status, "origin error");
                        }
                    };
                    status = code;
                    let mut head = self.packet(PacketType::Data);
                    head.code = Some(code);
                    head.reason = reason;
                    head.headers = Some(headers);
                    let finished = body.as_ref().is_none_or(|b| b.is_end_stream());
                    if finished && pending.is_empty() {
                        head.body = Some(Bytes::new());
                        head.more = then_hold.is_some();
                        self.send(head).await;
                        return self.body_sent(status, then_hold.take()).await;
                    }
                    // Hold the head back to send it with a small, known-size
                    // body in one packet; stream everything else at once.
                    let known = match &body {
                        Some(body) => body.size_hint().exact(),
                        None => Some(pending.len() as u64),
                    };
                    let head = if known.is_some_and(|n| n <= self.endpoint.credits() as u64) {
                        Some(Box::new(head))
                    } else {
                        head.more = true;
                        self.send(head).await;
                        None
                    };
                    phase = Phase::Body { body, head, pending };
                }
                OriginEvent::Frame(frame) => {
                    let Phase::Body { body, head, pending } = &mut phase else { continue };
                    match frame {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                *pending = data;
                                if pending.is_empty() && body.as_ref().is_none_or(|b| b.is_end_stream()) {
                                    let head = head.take();
                                    return self.end_body(status, head, then_hold.take()).await;
                                }
                            }
                        }
                        Some(Err(err)) => {
                            tracing::warn!(session = %self.endpoint.id(), error = %err, "origin response body failed");
                            let mut packet = head.take().map(|h| *h).unwrap_or_else(|| self.packet(PacketType::Error));
                            packet.kind = PacketType::Error;
                            packet.condition = Some("remote-connection-failed".into());
                            self.send(packet).await;
                            return (status, "origin body error");
                        }
                        None => {
                            let head = head.take();
                            return self.end_body(status, head, then_hold.take()).await;
                        }
                    }
                }
                },
                packet = self.inbox.recv() => {
                    let Some(packet) = packet else { return (status, "shutdown") };
                    if let Some(outcome) = self.on_packet(*packet).await {
                        return (status, outcome);
                    }
                }
                n = drained.take() => {
                    if let Some(credit) = self.endpoint.grant(n) {
                        self.send(credit).await;
                    }
                }
                _ = &mut timer => {
                    if !self.on_timer().await {
                        return (status, "expired");
                    }
                    timer.as_mut().reset(self.endpoint.next_deadline());
                }
            }
        }
    }

    /// The origin's body ended: the response ends too, or, for a stream
    /// hold whose initial body just passed, the hold begins.
    async fn end_body(
        &mut self,
        status: u16,
        head: Option<Box<Packet>>,
        then_hold: Option<PendingHold>,
    ) -> (u16, &'static str) {
        // An unsent head goes out with the end; once the head went out an
        // empty packet only matters when it ends the response.
        if head.is_some() || then_hold.is_none() {
            let mut packet = head
                .map(|h| *h)
                .unwrap_or_else(|| self.packet(PacketType::Data));
            packet.body = Some(Bytes::new());
            packet.more = then_hold.is_some();
            self.send(packet).await;
        }
        self.body_sent(status, then_hold).await
    }

    /// After the last body packet went out.
    async fn body_sent(
        &mut self,
        status: u16,
        then_hold: Option<PendingHold>,
    ) -> (u16, &'static str) {
        match then_hold {
            Some(hold) => self.hand_over(hold).await,
            None => (status, "ok"),
        }
    }

    /// What a hand-over needs before anything of the response goes out: a
    /// handler, and the client's whole request (for retries and links).
    /// `Err` has ended the session.
    async fn prepare_hand_over(
        &mut self,
        code: u16,
        debug: bool,
    ) -> Result<(mpsc::Sender<Multipart>, handoff::Request), (u16, &'static str)> {
        self.shared
            .metrics
            .holds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(handler) = self.shared.handler.clone() else {
            return Err((
                self.fail_with(&ProxyError::HoldUnsupported, debug).await,
                "no handler",
            ));
        };
        // The origin may answer before connmgr's last body packet reached
        // us (it knew the length): take the rest of the body first.
        if let Err(outcome) = self.finish_body().await {
            return Err((code, outcome));
        }
        let Some(request) = self.request.take().filter(|_| !self.body_open) else {
            let err = ProxyError::BadRequest("Request too large to accept GRIP instruct.".into());
            return Err((self.fail_with(&err, debug).await, "streamed request"));
        };
        Ok((handler, request))
    }

    /// Passes the session to the handler: pauses it with connmgr
    /// (`handoff-start`, wait for `handoff-proceed`), then sends the handler
    /// everything it needs to continue it.
    async fn hand_over(&mut self, hold: PendingHold) -> (u16, &'static str) {
        let PendingHold {
            handler,
            request,
            instruct,
            response,
            origin,
            prefix,
            session,
            started,
            cross_origin,
        } = hold;
        let code = response.code;
        let start = self.packet(PacketType::HandoffStart);
        self.send(start).await;
        let proceed = tokio::time::timeout(HANDOFF_TIMEOUT, async {
            while let Some(packet) = self.inbox.recv().await {
                if !self.take_in(&packet) {
                    return false;
                }
                match packet.kind() {
                    PacketType::HandoffProceed => return true,
                    PacketType::Cancel | PacketType::Error => return false,
                    _ => {}
                }
            }
            false
        })
        .await;
        if proceed != Ok(true) {
            tracing::warn!(session = %self.endpoint.id(), "connmgr did not proceed with the hand-over; session dropped");
            return (code, "handoff failed");
        }
        let mut hold = answer::hold_of(*instruct, &prefix);
        hold.session = session;
        let (in_seq, out_seq) = self.endpoint.seqs();
        let accept = handoff::Accept {
            connmgr: self.connmgr.clone(),
            id: self.endpoint.id().to_owned(),
            in_seq,
            out_seq,
            credits: u32::try_from(self.endpoint.credits()).unwrap_or(u32::MAX),
            peer_address: self.peer.clone(),
            request,
            response,
            started,
            cross_origin,
            hold,
            origin,
        };
        match format::encode(&accept, self.shared.sockets.format) {
            Ok(frame) => {
                if handler.send(vec![frame]).await.is_err() {
                    tracing::warn!(session = %self.endpoint.id(), "handler socket closed; held session lost");
                }
            }
            Err(err) => {
                tracing::warn!(session = %self.endpoint.id(), error = %err, "hand-over not encoded")
            }
        }
        (code, "held")
    }

    /// Takes the rest of the request body from connmgr, while it fits the
    /// replay copy and arrives within [`HANDOFF_TIMEOUT`]; afterwards the
    /// body is whole when `body_open` is false and `request` is kept.
    /// `Err` ends the session (the client went away).
    async fn finish_body(&mut self) -> Result<(), &'static str> {
        let deadline = Instant::now() + HANDOFF_TIMEOUT;
        while self.body_open && self.request.is_some() {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(packet)) => {
                    if let Some(outcome) = self.on_packet(*packet).await {
                        return Err(outcome);
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// Handles a packet from connmgr; `Some` ends the session.
    async fn on_packet(&mut self, packet: Packet) -> Option<&'static str> {
        if !self.take_in(&packet) {
            let cancel = self.packet(PacketType::Cancel);
            self.send(cancel).await;
            return Some("bad seq");
        }
        match packet.kind() {
            PacketType::Data => {
                if let Some(tx) = &self.body_tx {
                    if let Some(body) = packet.body.filter(|b| !b.is_empty()) {
                        keep_for_replay(&mut self.request, &body);
                        // Never waits: the window we granted bounds it
                        // (connmgr's sending past it already failed the
                        // endpoint's check).
                        if tx.push(body).is_err() {
                            // The origin stopped reading the body; its response decides.
                            self.body_tx = None;
                        }
                    }
                }
                if !packet.more {
                    self.body_tx = None;
                    self.body_open = false;
                }
                None
            }
            PacketType::Cancel => Some("cancelled by client"),
            PacketType::Error => Some("error from connmgr"),
            PacketType::HandoffStart => {
                let proceed = self.packet(PacketType::HandoffProceed);
                self.send(proceed).await;
                None
            }
            _ => None,
        }
    }

    async fn fail(&mut self, err: &ProxyError) -> u16 {
        let debug = self.shared.debug;
        self.fail_with(err, debug).await
    }

    /// Answers the client with the error's status and short text.
    async fn fail_with(&mut self, err: &ProxyError, debug: bool) -> u16 {
        let level = match err.source() {
            crate::error::ErrorSource::Client => 2,
            _ => 1,
        };
        match (route_log(self.log_level, level), level) {
            (RouteLog::Quiet, _) => {}
            (_, 2) => tracing::info!(session = %self.endpoint.id(), "{err}"),
            _ => tracing::warn!(session = %self.endpoint.id(), "{err}"),
        }
        let (code, text) = err.response(debug);
        self.respond_text(code, &text).await;
        code
    }

    /// Answers the client with `code` and a short text.
    async fn respond_text(&mut self, code: u16, text: &str) {
        let headers = vec![Header(
            "Content-Type".into(),
            Bytes::from_static(b"text/plain"),
        )];
        let body = Bytes::copy_from_slice(text.as_bytes());
        self.respond(code, headers, body).await;
    }

    /// Answers the client with a whole response (its length added).
    async fn respond(&mut self, code: u16, mut headers: Vec<Header>, body: Bytes) {
        headers.push(Header(
            "Content-Length".into(),
            Bytes::from(body.len().to_string()),
        ));
        let mut packet = self.packet(PacketType::Data);
        packet.code = Some(code);
        packet.reason = http::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map(str::to_owned);
        packet.headers = Some(headers);
        packet.body = Some(body);
        self.send(packet).await;
    }

    /// Checks a packet from connmgr (its sequence number, the body it may
    /// send) and takes its credits; false when connmgr broke the protocol.
    fn take_in(&mut self, packet: &Packet) -> bool {
        match self.endpoint.receive(packet, Instant::now()) {
            Ok(()) => {
                if *packet.kind() == PacketType::Close && self.client_close == ClientClose::Open {
                    self.client_close = ClientClose::Received(packet.code);
                }
                true
            }
            Err(err) => {
                tracing::warn!(session = %self.endpoint.id(), "packet from connmgr refused: {err}");
                false
            }
        }
    }

    /// Keep-alive and expiry; false when connmgr is gone.
    async fn on_timer(&mut self) -> bool {
        let now = Instant::now();
        if self.endpoint.expired(now) {
            tracing::warn!(session = %self.endpoint.id(), "connmgr silent for {}s: session expired", holdfast_protocol::zhttp::SESSION_EXPIRY.as_secs());
            return false;
        }
        if self.endpoint.keep_alive_due(now) {
            let packet = self.packet(PacketType::KeepAlive);
            self.send(packet).await;
        }
        true
    }

    /// A packet of this session; [`Session::send`] numbers it.
    fn packet(&self, kind: PacketType) -> Packet {
        self.endpoint.packet(kind)
    }

    /// Sends `packet` if there is one (a credit that may not be due, say),
    /// without the awaiting future keeping room for it.
    fn send_if_any(
        &mut self,
        packet: Option<Packet>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        match packet {
            Some(packet) => self.send(packet),
            None => Box::pin(std::future::ready(())),
        }
    }

    /// Numbers `packet` as it leaves (see [`Endpoint::stamp`]) and sends it.
    /// A plain fn returning a boxed future: as an async fn, every future
    /// awaiting it would keep room for the packet (twice over) for good,
    /// and a WebSocket session's future lives as long as the connection.
    fn send(&mut self, mut packet: Packet) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if self.endpoint.stamp(&mut packet, Instant::now()).is_none() {
                return;
            }
            if let Some(peer) = &self.local {
                // Gone: the session ends on its own when it hears nothing.
                let _ = peer.send(packet).await;
                return;
            }
            if let Err(err) = self.shared.sockets.send(&self.connmgr, &packet).await {
                tracing::warn!(session = %self.endpoint.id(), error = %err, "packet to connmgr not encoded");
            }
        })
    }
}

/// Largest request body kept for a hand-over (Pushpin's limit for
/// requests whose answer may be held).
const REPLAY_MAX: usize = 100_000;

/// Appends a streamed body chunk to the copy kept for a hand-over, or drops
/// the copy once the body is too large to keep.
fn keep_for_replay(request: &mut Option<handoff::Request>, chunk: &Bytes) {
    if let Some(r) = request {
        if r.body.len() + chunk.len() > REPLAY_MAX {
            *request = None;
        } else {
            let mut body = Vec::with_capacity(r.body.len() + chunk.len());
            body.extend_from_slice(&r.body);
            body.extend_from_slice(chunk);
            r.body = Bytes::from(body);
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::{route_log, strip_port, RouteLog};

    #[test]
    fn a_route_level_quiets_or_lifts_its_lines() {
        assert_eq!(route_log(None, 3), RouteLog::AsIs);
        assert_eq!(route_log(Some(2), 3), RouteLog::Quiet);
        assert_eq!(route_log(Some(3), 3), RouteLog::Lifted);
        assert_eq!(route_log(Some(0), 1), RouteLog::Quiet);
        assert_eq!(route_log(Some(1), 1), RouteLog::AsIs);
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
