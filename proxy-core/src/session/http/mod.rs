//! A plain request: forwarded to the route's targets (or answered by the
//! edge cache on a `cache` route), its answer interpreted for GRIP, and
//! then either streamed back within connmgr's credits while the request
//! body streams to the origin within ours, or handed to the handler
//! ([`hold`]) when the origin says to hold the connection. A stream hold
//! whose answer has an initial body streams that body first, and is
//! handed over at its end.
//!
//! The loop waits for the next event (the origin's head or body, a packet
//! from connmgr, body bytes the origin took, the session's timer) and
//! hands each to a small function of its own.

mod cross_origin;
mod hold;

use crate::error::ProxyError;
use crate::origin::body::OriginBody;
use crate::origin::forward::{forward, Forwarded};
use crate::prepare::Prepared;
use crate::session::request_body::RequestBody;
use crate::session::zhttp::{Ended, Zhttp};
use bytes::Bytes;
use cross_origin::cross_origin_answer;
use futures_util::future::BoxFuture;
use hold::Hold;
use holdfast_grip::answer::{self, Answer};
use holdfast_grip::instruct::Instruct;
use holdfast_protocol::handoff;
use holdfast_protocol::zhttp::{Header, Packet, PacketType};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::pin::Pin;
use tokio::time::{sleep_until, Sleep};

/// Serves a plain request.
pub(crate) async fn serve(
    zhttp: &mut Zhttp,
    body: RequestBody,
    mut prepared: Box<Prepared>,
) -> Ended {
    let mut session = HttpSession {
        terms: Terms::of(&prepared, zhttp.shared.debug),
        zhttp,
        body,
        status: 0,
        then_hold: None,
    };
    if prepared.route.session && session.zhttp.shared.inspector.is_some() {
        if let Err(outcome) = session.inspect(&mut prepared).await {
            return (0, outcome);
        }
    }
    let shared = session.zhttp.shared.clone();
    let fetch: BoxFuture<'static, Result<Forwarded, ProxyError>> =
        if crate::cache::applies(&prepared) {
            Box::pin(crate::cache::serve(shared, *prepared))
        } else {
            Box::pin(forward(shared, *prepared))
        };
    session.run(Phase::Head(fetch)).await
}

/// What the answer's handling takes from the request, before the request
/// goes to the origin.
struct Terms {
    /// GRIP instructions in the answer are obeyed (a GRIP route, and a
    /// client that is not a trusted upstream proxy, which passes them on).
    grip: bool,
    /// The route's channel prefix.
    prefix: String,
    /// Detailed error bodies.
    debug: bool,
    /// The request's host, for routes with `session`.
    session_host: Option<String>,
    /// Route `aco`: how to shape the answer.
    cross_origin: Option<handoff::CrossOrigin>,
    /// The client's headers, for CORS (on `aco` routes only).
    client_headers: Option<Vec<Header>>,
}

impl Terms {
    fn of(prepared: &Prepared, debug: bool) -> Terms {
        let cross_origin = prepared.cross_origin.clone();
        Terms {
            grip: !prepared.route.no_grip && !prepared.trusted,
            prefix: prepared.route.prefix.clone().unwrap_or_default(),
            debug: debug || prepared.route.debug,
            session_host: prepared.route.session.then(|| prepared.host.clone()),
            client_headers: cross_origin.as_ref().map(|_| prepared.headers.clone()),
            cross_origin,
        }
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

/// What happened next.
enum Event {
    /// The origin's head (or why there is none).
    Head(Result<Forwarded, ProxyError>),
    /// The origin's next body frame.
    Frame(Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>),
    /// A packet from connmgr (`None`: shutting down).
    Packet(Option<Box<Packet>>),
    /// Request body bytes the origin took.
    Drained(usize),
    /// The session's keep-alive or expiry is due.
    Timer,
}

/// The head of a response, and what follows it.
struct Head {
    code: u16,
    reason: Option<String>,
    headers: Vec<Header>,
    /// The body still to read from the origin.
    body: Option<OriginBody>,
    /// Body bytes already in hand.
    pending: Bytes,
}

/// A plain request being served.
struct HttpSession<'a> {
    zhttp: &'a mut Zhttp,
    body: RequestBody,
    terms: Terms,
    /// The answer's status, once known.
    status: u16,
    /// A stream hold whose initial body streams first; handed over at its
    /// end.
    then_hold: Option<Hold>,
}

impl HttpSession<'_> {
    /// Finds the request's client session (routes with `session`): the
    /// session id is looked for in the whole body, so the body is waited
    /// for (queued for the origin meanwhile).
    async fn inspect(&mut self, prepared: &mut Prepared) -> Result<(), &'static str> {
        self.body.finish(self.zhttp).await?;
        if let (Some(inspector), Some(request)) = (&self.zhttp.shared.inspector, self.body.whole())
        {
            prepared.session = inspector
                .inspect(&prepared.host, &prepared.path, request.body.clone())
                .await;
        }
        tracing::debug!(session = %self.zhttp.id(), sid = ?prepared.session.as_ref().and_then(|s| s.sid.as_deref()), "client session inspected");
        Ok(())
    }

    async fn run(&mut self, mut phase: Phase) -> Ended {
        let timer = sleep_until(self.zhttp.endpoint.next_deadline());
        tokio::pin!(timer);
        loop {
            if let Some(ended) = self.send_pending(&mut phase).await {
                return ended;
            }
            let ended = match self.next_event(&mut phase, timer.as_mut()).await {
                Event::Head(result) => self.on_head(result, &mut phase).await,
                Event::Frame(frame) => self.on_frame(frame, &mut phase).await,
                Event::Packet(None) => Some((self.status, "shutdown")),
                Event::Packet(Some(packet)) => self
                    .body
                    .on_packet(self.zhttp, *packet)
                    .await
                    .map(|outcome| (self.status, outcome)),
                Event::Drained(n) => {
                    self.zhttp.give_back(n).await;
                    None
                }
                Event::Timer => {
                    if !self.zhttp.on_timer().await {
                        return (self.status, "expired");
                    }
                    timer.as_mut().reset(self.zhttp.endpoint.next_deadline());
                    None
                }
            };
            if let Some(ended) = ended {
                return ended;
            }
        }
    }

    /// Waits for what happens next. The origin's body is read only while
    /// connmgr can take it (or a held-back head can carry it).
    async fn next_event(&mut self, phase: &mut Phase, timer: Pin<&mut Sleep>) -> Event {
        let can_read = match phase {
            Phase::Body { pending, head, .. } => {
                pending.is_empty() && (self.zhttp.endpoint.can_send() || head.is_some())
            }
            Phase::Head(_) => false,
        };
        let drained = self.body.drained();
        tokio::select! {
            event = origin_event(phase, can_read) => event,
            packet = self.zhttp.inbox.recv() => Event::Packet(packet),
            n = drained.take() => Event::Drained(n),
            _ = timer => Event::Timer,
        }
    }

    /// Sends what connmgr has room for of the body in hand; `Some` once
    /// the response has ended.
    async fn send_pending(&mut self, phase: &mut Phase) -> Option<Ended> {
        let Phase::Body {
            pending,
            head,
            body,
        } = phase
        else {
            return None;
        };
        while !pending.is_empty() && (self.zhttp.endpoint.can_send() || head.is_some()) {
            let chunk = pending.split_to(self.zhttp.endpoint.take_credits(pending.len()));
            let done = pending.is_empty() && body.as_ref().is_none_or(|b| b.is_end_stream());
            let mut packet = head
                .take()
                .map(|h| *h)
                .unwrap_or_else(|| self.zhttp.packet(PacketType::Data));
            packet.body = Some(chunk);
            packet.more = !done || self.then_hold.is_some();
            self.zhttp.send(packet).await;
            if done {
                return Some(self.body_sent().await);
            }
        }
        None
    }

    /// The origin's head: interpreted for GRIP and shaped for another
    /// origin where the route says so, then relayed, sent whole, or held.
    async fn on_head(
        &mut self,
        result: Result<Forwarded, ProxyError>,
        phase: &mut Phase,
    ) -> Option<Ended> {
        let (answer, origin) = match result {
            Ok(Forwarded { response, origin }) => {
                let answer = answer::interpret(response, self.terms.grip).await;
                (answer.map_err(ProxyError::from), Some(origin))
            }
            Err(err) => (Err(err), None),
        };
        let answer = match (answer, &self.terms.cross_origin, &self.terms.client_headers) {
            (Ok(answer), Some(shape), Some(request)) => {
                cross_origin_answer(answer, shape, request).await
            }
            (answer, _, _) => answer,
        };
        let head = match answer {
            Ok(Answer::Relay {
                code,
                reason,
                headers,
                body,
            }) => Head {
                code,
                reason,
                headers,
                body: Some(body),
                pending: Bytes::new(),
            },
            Ok(Answer::Whole {
                code,
                reason,
                headers,
                body,
            }) => Head {
                code,
                reason,
                headers,
                body: None,
                pending: body,
            },
            Ok(Answer::Hold {
                instruct,
                response,
                rest,
            }) => match self.on_hold(instruct, response, rest, origin).await {
                Ok(head) => head,
                Err(ended) => return Some(ended),
            },
            Err(err) => {
                self.status = self.zhttp.fail_with(&err, self.terms.debug).await;
                return Some((self.status, "origin error"));
            }
        };
        self.status = head.code;
        self.start_response(head, phase).await
    }

    /// An answer that says to hold: handed over now, or, for a stream
    /// hold with an initial body, after that body (whose head is
    /// returned to go out from here, as for a relayed answer).
    async fn on_hold(
        &mut self,
        instruct: Box<Instruct>,
        mut response: handoff::Response,
        rest: Option<OriginBody>,
        origin: Option<handoff::Origin>,
    ) -> Result<Head, Ended> {
        let prefix = self.terms.prefix.clone();
        let origin = origin.map(|mut o| {
            o.prefix = prefix.clone();
            o
        });
        let session = self
            .terms
            .session_host
            .as_deref()
            .and_then(|host| answer::session_of(&instruct, &prefix, host));
        let (handler, request) =
            hold::prepare(self.zhttp, &mut self.body, response.code, self.terms.debug).await?;
        let Some(rest) = rest else {
            let hold = Hold {
                handler,
                request,
                instruct,
                response,
                origin,
                prefix,
                session,
                started: false,
                cross_origin: self.terms.cross_origin.clone(),
            };
            return Err(hold::hand_over(self.zhttp, hold).await);
        };
        let start = std::mem::take(&mut response.body);
        let mut headers = response.headers.clone();
        if let Some(request) = &self.terms.client_headers {
            holdfast_grip::cross_origin::apply_cors(request, &mut headers);
        }
        let head = Head {
            code: response.code,
            reason: Some(response.reason.clone()),
            headers,
            body: Some(rest),
            pending: start,
        };
        self.then_hold = Some(Hold {
            handler,
            request,
            instruct,
            response,
            origin,
            prefix,
            session,
            started: true,
            cross_origin: self.terms.cross_origin.clone(),
        });
        Ok(head)
    }

    /// Sends the head: with an empty body when there is nothing more,
    /// held back to go with a small body of known size, or at once.
    async fn start_response(&mut self, head: Head, phase: &mut Phase) -> Option<Ended> {
        let mut packet = self.zhttp.packet(PacketType::Data);
        packet.code = Some(head.code);
        packet.reason = head.reason;
        packet.headers = Some(head.headers);
        let (body, pending) = (head.body, head.pending);
        let finished = body.as_ref().is_none_or(|b| b.is_end_stream());
        if finished && pending.is_empty() {
            packet.body = Some(Bytes::new());
            packet.more = self.then_hold.is_some();
            self.zhttp.send(packet).await;
            return Some(self.body_sent().await);
        }
        let known = match &body {
            Some(body) => body.size_hint().exact(),
            None => Some(pending.len() as u64),
        };
        let head = if known.is_some_and(|n| n <= self.zhttp.endpoint.credits() as u64) {
            Some(Box::new(packet))
        } else {
            packet.more = true;
            self.zhttp.send(packet).await;
            None
        };
        *phase = Phase::Body {
            body,
            head,
            pending,
        };
        None
    }

    /// A frame of the origin's body: data to send, the end, or a failure.
    async fn on_frame(
        &mut self,
        frame: Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>,
        phase: &mut Phase,
    ) -> Option<Ended> {
        let Phase::Body {
            body,
            head,
            pending,
        } = phase
        else {
            return None;
        };
        match frame {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    return None;
                };
                *pending = data;
                if pending.is_empty() && body.as_ref().is_none_or(|b| b.is_end_stream()) {
                    let head = head.take();
                    return Some(self.end_body(head).await);
                }
                None
            }
            Some(Err(err)) => {
                tracing::warn!(session = %self.zhttp.id(), error = %err, "origin response body failed");
                let mut packet = head
                    .take()
                    .map(|h| *h)
                    .unwrap_or_else(|| self.zhttp.packet(PacketType::Error));
                packet.kind = PacketType::Error;
                packet.condition = Some("remote-connection-failed".into());
                self.zhttp.send(packet).await;
                Some((self.status, "origin body error"))
            }
            None => {
                let head = head.take();
                Some(self.end_body(head).await)
            }
        }
    }

    /// The origin's body ended: the response ends too, or, for a stream
    /// hold whose initial body just passed, the hold begins.
    async fn end_body(&mut self, head: Option<Box<Packet>>) -> Ended {
        // An unsent head goes out with the end; once the head went out an
        // empty packet only matters when it ends the response.
        if head.is_some() || self.then_hold.is_none() {
            let mut packet = head
                .map(|h| *h)
                .unwrap_or_else(|| self.zhttp.packet(PacketType::Data));
            packet.body = Some(Bytes::new());
            packet.more = self.then_hold.is_some();
            self.zhttp.send(packet).await;
        }
        self.body_sent().await
    }

    /// After the last body packet went out.
    async fn body_sent(&mut self) -> Ended {
        match self.then_hold.take() {
            Some(hold) => hold::hand_over(self.zhttp, hold).await,
            None => (self.status, "ok"),
        }
    }
}

/// Waits for the origin's head, or its next body frame when `can_read`.
async fn origin_event(phase: &mut Phase, can_read: bool) -> Event {
    match phase {
        Phase::Head(fut) => Event::Head(fut.await),
        Phase::Body {
            body: Some(body), ..
        } if can_read => Event::Frame(body.frame().await),
        Phase::Body { .. } => std::future::pending().await,
    }
}
