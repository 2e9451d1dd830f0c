//! WebSocket sessions: to a WebSocket origin ([`passthrough`], its
//! handshake in [`connect`]) or through a WebSocket-over-HTTP one
//! ([`over_http`]), with GRIP on either ([`grip`], deliveries by session
//! through [`routes`]). What waits for the client, within connmgr's
//! credits, is [`client`]'s. A session's peer may be in this process: a
//! SockJS session standing for its client ([`start_local`]).

pub(crate) mod client;
mod connect;
pub(crate) mod grip;
mod over_http;
mod passthrough;
pub(crate) mod routes;

use crate::error::ProxyError;
use crate::prepare::{prepare, Prepared};
use crate::routes::Route;
use crate::session::zhttp::{Ended, Zhttp};
use crate::shared::Shared;
use holdfast_protocol::zhttp::{Endpoint, Packet};
use holdfast_protocol::zmq::session_key;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often a WebSocket session with GRIP tells the handler it still
/// exists (the handler forgets sessions not heard of for 2 minutes).
const VOUCH_INTERVAL: Duration = Duration::from_secs(45);

/// Serves a WebSocket session, through the route's WebSocket-over-HTTP
/// target if it has one, else to its WebSocket targets.
pub(crate) async fn serve(zhttp: &mut Zhttp, prepared: Box<Prepared>) -> Ended {
    let gauge = zhttp.shared.metrics.websockets.clone();
    gauge.fetch_add(1, Ordering::Relaxed);
    let ended = if prepared.route.targets.iter().any(|t| t.over_http) {
        Box::pin(over_http::serve(zhttp, prepared)).await
    } else {
        Box::pin(passthrough::serve(zhttp, prepared)).await
    };
    gauge.fetch_sub(1, Ordering::Relaxed);
    ended
}

/// Starts a WebSocket session whose peer is in this process (a SockJS
/// session standing for its client): `first` is the request as connmgr
/// would send it, from `from`; the session's packets go to `to_peer`,
/// its peer's come through the session table like connmgr's; `route` is
/// used as it is (no routing by path).
pub(crate) fn start_local(
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
    let peer = first.peer_address.clone();
    let zhttp = Zhttp::new(shared, from.to_owned(), endpoint, key, peer, Some(to_peer));
    shared
        .tracker
        .spawn(run_local(Box::new(zhttp), Box::new(first), Box::new(route)));
    Ok(())
}

/// A session with a local peer, from its first packet to its end.
async fn run_local(mut zhttp: Box<Zhttp>, first: Box<Packet>, route: Box<Route>) {
    let started = Instant::now();
    let line = format!("GET {}", first.uri.as_deref().unwrap_or("-"));
    let shared = zhttp.shared.clone();
    let prepared = prepare(&shared, &first, Some(*route));
    drop(first);
    let (status, outcome) = match prepared {
        Ok((prepared, _)) => {
            zhttp.log_level = prepared.route.log_level;
            Box::pin(serve(&mut zhttp, Box::new(prepared))).await
        }
        Err(err) => {
            let code = Box::pin(zhttp.fail_with(&err, shared.debug)).await;
            (code, "refused")
        }
    };
    zhttp.log_end(&line, started, status, outcome);
}
