//! One client request as a ZHTTP session. connmgr's first packet starts
//! it; it is prepared (routed), then served by the kind of session it
//! asks for, each a type of its own over the same ZHTTP side:
//!
//! - [`zhttp`]: the side every kind shares (endpoint, inbox, credits,
//!   sending, error answers, the log line).
//! - [`request_body`]: a request body that streams toward the origin
//!   within the window granted to connmgr, and the copy a hand-over keeps.
//! - [`http`]: a plain request: forwarded (or answered by the edge cache),
//!   the answer streamed back within connmgr's credits, or handed to the
//!   handler when it says to hold.
//! - [`ws`]: a WebSocket, to a WebSocket origin or through a
//!   WebSocket-over-HTTP one, with GRIP on either.
//! - [`sockjs`]: the SockJS endpoints of a route with `sockjs`.
//!
//! A `PURGE` on a route with `cache` is the edge cache's
//! ([`crate::cache::purge`]).

pub(crate) mod http;
pub(crate) mod request_body;
pub(crate) mod sockjs;
pub(crate) mod ws;
pub(crate) mod zhttp;

use crate::prepare::prepare;
use crate::shared::Shared;
use holdfast_protocol::format;
use holdfast_protocol::zhttp::{Endpoint, Packet, PacketType, MAX_FROM_LEN};
use holdfast_protocol::zmq::session_key;
use request_body::RequestBody;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;
use zhttp::Zhttp;

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
    shared.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let mut endpoint = Endpoint::new(shared.from.clone(), id, Instant::now());
    if let Err(err) = endpoint.receive(&first, Instant::now()) {
        tracing::warn!(%from, "request packet refused: {err}");
        return;
    }
    let peer = first.peer_address.clone();
    let zhttp = Zhttp::new(shared, from, endpoint, key, peer, None);
    shared.tracker.spawn(run(Box::new(zhttp), Box::new(first)));
}

/// Prepares the request and serves it as the kind of session it asks for.
/// The side and `first` come boxed, and so does each kind's future: this
/// task lives as long as the session, and unboxed it would be sized for
/// the largest kind (12 KiB in all), whichever it runs. Each step's
/// future is made in a statement of its own (a temporary lives to the end
/// of its statement, await included).
async fn run(mut zhttp: Box<Zhttp>, first: Box<Packet>) {
    let started = Instant::now();
    let line = format!(
        "{} {}",
        first.method.as_deref().unwrap_or("-"),
        first.uri.as_deref().unwrap_or("-")
    );
    let shared = zhttp.shared.clone();
    let (status, outcome) = match prepare(&shared, &first, None) {
        Ok((prepared, replay)) => {
            zhttp.log_level = prepared.route.log_level;
            let prepared = Box::new(prepared);
            let more = first.more;
            drop(first);
            if sockjs::applies(&prepared) {
                let mut prepared = prepared;
                let body = Box::pin(RequestBody::start(&mut zhttp, &mut prepared, replay, more));
                let body = body.await;
                let step = Box::pin(sockjs::serve(&mut zhttp, body, prepared));
                step.await
            } else if prepared.websocket {
                drop(replay);
                let step = Box::pin(ws::serve(&mut zhttp, prepared));
                step.await
            } else if crate::cache::is_purge(&prepared) {
                let (code, text) = crate::cache::purge(&shared, &prepared);
                drop((prepared, replay));
                Box::pin(zhttp.respond_text(code, &text)).await;
                (code, "purge")
            } else {
                let mut prepared = prepared;
                let body = Box::pin(RequestBody::start(&mut zhttp, &mut prepared, replay, more));
                let body = body.await;
                let step = Box::pin(http::serve(&mut zhttp, body, prepared));
                step.await
            }
        }
        Err(err) => {
            drop(first);
            let code = Box::pin(zhttp.fail_with(&err, shared.debug)).await;
            (code, "refused")
        }
    };
    zhttp.log_end(&line, started, status, outcome);
}
