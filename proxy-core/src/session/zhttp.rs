//! A session's side of ZHTTP, whatever kind of session it is: its ids,
//! sequence numbers, credits and liveness toward connmgr (an
//! [`Endpoint`]), the inbox the session table fills with connmgr's packets,
//! and how packets go out (to connmgr, or to a peer in this process: a
//! SockJS session standing for its client). Also the answers every kind
//! gives the same way: errors, short texts, whole responses, and the
//! request's line in the log at its route's `log_level`.

use crate::error::{ErrorSource, ProxyError};
use crate::shared::Shared;
use bytes::Bytes;
use holdfast_protocol::zhttp::{Endpoint, Header, Packet, PacketType, SESSION_EXPIRY};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How a session ended: the status the client got (0 for none) and a word
/// for the log.
pub(crate) type Ended = (u16, &'static str);

/// A boxed future of a send: see [`Zhttp::send`].
pub(crate) type Sending<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The session's ZHTTP side.
pub(crate) struct Zhttp {
    /// What every session shares.
    pub shared: Arc<Shared>,
    /// connmgr's id: where our packets go (the session table's key
    /// qualifies ids by it).
    pub connmgr: String,
    /// Ids, sequence numbers, credits and liveness toward connmgr.
    pub endpoint: Endpoint,
    /// connmgr's packets for this session.
    pub inbox: mpsc::Receiver<Box<Packet>>,
    /// The client's address.
    pub peer: Option<String>,
    /// The route's `log_level`, once the request is routed.
    pub log_level: Option<u8>,
    /// The session table's key.
    key: String,
    /// A peer in this process (a SockJS session), instead of connmgr.
    local: Option<mpsc::Sender<Packet>>,
}

impl Zhttp {
    /// The side of a session with its peer `from` (connmgr's id),
    /// registered in the session table under `key` until it is dropped;
    /// its packets go to `local` when the peer is in this process.
    pub fn new(
        shared: &Arc<Shared>,
        from: String,
        endpoint: Endpoint,
        key: String,
        peer: Option<String>,
        local: Option<mpsc::Sender<Packet>>,
    ) -> Zhttp {
        let inbox = shared.sockets.sessions().register(key.clone());
        Zhttp {
            shared: shared.clone(),
            connmgr: from,
            endpoint,
            inbox,
            peer,
            log_level: None,
            key,
            local,
        }
    }

    /// The session's id.
    pub fn id(&self) -> &str {
        self.endpoint.id()
    }

    /// A packet of this session; [`Zhttp::send`] numbers it.
    pub fn packet(&self, kind: PacketType) -> Packet {
        self.endpoint.packet(kind)
    }

    /// Numbers `packet` as it leaves (see [`Endpoint::stamp`]) and sends it.
    /// A plain fn returning a boxed future: as an async fn, every future
    /// awaiting it would keep room for the packet (twice over) for good,
    /// and a WebSocket session's future lives as long as the connection.
    pub fn send(&mut self, mut packet: Packet) -> Sending<'_> {
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

    /// Sends `packet` if there is one (a credit that may not be due, say),
    /// without the awaiting future keeping room for it.
    pub fn send_if_any(&mut self, packet: Option<Packet>) -> Sending<'_> {
        match packet {
            Some(packet) => self.send(packet),
            None => Box::pin(std::future::ready(())),
        }
    }

    /// Gives connmgr `bytes` of credit back, when a credit packet is due.
    pub fn give_back(&mut self, bytes: usize) -> Sending<'_> {
        let credit = self.endpoint.grant(bytes);
        self.send_if_any(credit)
    }

    /// Checks a packet from connmgr (its sequence number, the body it may
    /// send) and takes its credits; false when connmgr broke the protocol.
    pub fn take_in(&mut self, packet: &Packet) -> bool {
        match self.endpoint.receive(packet, Instant::now()) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(session = %self.endpoint.id(), "packet from connmgr refused: {err}");
                false
            }
        }
    }

    /// Keep-alive and expiry; false when connmgr is gone.
    pub async fn on_timer(&mut self) -> bool {
        let now = Instant::now();
        if self.endpoint.expired(now) {
            tracing::warn!(session = %self.endpoint.id(), "connmgr silent for {}s: session expired", SESSION_EXPIRY.as_secs());
            return false;
        }
        let keep_alive = self
            .endpoint
            .keep_alive_due(now)
            .then(|| self.packet(PacketType::KeepAlive));
        self.send_if_any(keep_alive).await;
        true
    }

    /// Answers the client with the error's status and short text (the
    /// detail too when `debug`), logged as whose fault it is.
    pub async fn fail_with(&mut self, err: &ProxyError, debug: bool) -> u16 {
        let level = match err.source() {
            ErrorSource::Client => 2,
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
    pub async fn respond_text(&mut self, code: u16, text: &str) {
        let headers = vec![Header(
            "Content-Type".into(),
            Bytes::from_static(b"text/plain"),
        )];
        let body = Bytes::copy_from_slice(text.as_bytes());
        self.respond(code, headers, body).await;
    }

    /// Answers the client with a whole response (its length added).
    pub async fn respond(&mut self, code: u16, mut headers: Vec<Header>, body: Bytes) {
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

    /// The request's line at its end (debug, or info when its route's
    /// `log_level` asks for debug lines).
    pub fn log_end(&self, line: &str, started: Instant, status: u16, outcome: &str) {
        let elapsed = started.elapsed().as_millis();
        match route_log(self.log_level, 3) {
            RouteLog::Quiet => {}
            RouteLog::AsIs => tracing::debug!("{line} -> {status} {elapsed}ms {outcome}"),
            RouteLog::Lifted => tracing::info!("{line} -> {status} {elapsed}ms {outcome}"),
        }
    }
}

impl Drop for Zhttp {
    fn drop(&mut self) {
        self.shared.sockets.sessions().unregister(&self.key);
    }
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

#[cfg(test)]
mod tests {
    use super::{route_log, RouteLog};

    #[test]
    fn a_route_level_quiets_or_lifts_its_lines() {
        assert_eq!(route_log(None, 3), RouteLog::AsIs);
        assert_eq!(route_log(Some(2), 3), RouteLog::Quiet);
        assert_eq!(route_log(Some(3), 3), RouteLog::Lifted);
        assert_eq!(route_log(Some(0), 1), RouteLog::Quiet);
        assert_eq!(route_log(Some(1), 1), RouteLog::AsIs);
    }
}
