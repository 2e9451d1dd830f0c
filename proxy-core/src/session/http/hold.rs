//! Handing a session to the handler when the origin's answer says to hold
//! it: the client's whole request is needed first (for retries and
//! links); connmgr pauses the session (`handoff-start`, then
//! `handoff-proceed`), and the handler gets everything it needs to go on
//! with it.

use crate::error::ProxyError;
use crate::session::request_body::RequestBody;
use crate::session::zhttp::{Ended, Zhttp};
use holdfast_grip::answer;
use holdfast_grip::instruct::Instruct;
use holdfast_protocol::format;
use holdfast_protocol::handoff;
use holdfast_protocol::inspect::SessionUpdate;
use holdfast_protocol::zhttp::PacketType;
use holdfast_protocol::zmq::Multipart;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long connmgr may take to answer `handoff-start`.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

/// A hold ready to go to the handler: everything the hand-over carries
/// besides the session's own state.
pub(super) struct Hold {
    /// The handler's accept socket.
    pub handler: mpsc::Sender<Multipart>,
    /// The client's whole request.
    pub request: handoff::Request,
    /// The origin's instructions.
    pub instruct: Box<Instruct>,
    /// For a `started` stream: the head (already sent) and no body.
    pub response: handoff::Response,
    /// How the origin was asked.
    pub origin: Option<handoff::Origin>,
    /// The route's channel prefix.
    pub prefix: String,
    /// The client session it names, for routes with `session`.
    pub session: Option<SessionUpdate>,
    /// The proxy sent the head and the initial body itself.
    pub started: bool,
    /// Route `aco`: the handler shapes held responses too.
    pub cross_origin: Option<handoff::CrossOrigin>,
}

/// What a hand-over needs before anything of the response goes out: a
/// handler, and the client's whole request. `Err` has ended the session.
pub(super) async fn prepare(
    zhttp: &mut Zhttp,
    body: &mut RequestBody,
    code: u16,
    debug: bool,
) -> Result<(mpsc::Sender<Multipart>, handoff::Request), Ended> {
    zhttp.shared.metrics.holds.fetch_add(1, Ordering::Relaxed);
    let Some(handler) = zhttp.shared.handler.clone() else {
        let code = zhttp.fail_with(&ProxyError::HoldUnsupported, debug).await;
        return Err((code, "no handler"));
    };
    // The origin may answer before connmgr's last body packet reached
    // us (it knew the length): take the rest of the body first.
    if let Err(outcome) = body.finish(zhttp).await {
        return Err((code, outcome));
    }
    let Some(request) = body.take_whole() else {
        let err = ProxyError::BadRequest("Request too large to accept GRIP instruct.".into());
        return Err((zhttp.fail_with(&err, debug).await, "streamed request"));
    };
    Ok((handler, request))
}

/// Passes the session to the handler: pauses it with connmgr
/// (`handoff-start`, wait for `handoff-proceed`), then sends the handler
/// everything it needs to continue it.
pub(super) async fn hand_over(zhttp: &mut Zhttp, hold: Hold) -> Ended {
    let code = hold.response.code;
    let start = zhttp.packet(PacketType::HandoffStart);
    zhttp.send(start).await;
    if tokio::time::timeout(HANDOFF_TIMEOUT, proceeded(zhttp)).await != Ok(true) {
        tracing::warn!(session = %zhttp.id(), "connmgr did not proceed with the hand-over; session dropped");
        return (code, "handoff failed");
    }
    let Hold {
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
    let mut hold = answer::hold_of(*instruct, &prefix);
    hold.session = session;
    let (in_seq, out_seq) = zhttp.endpoint.seqs();
    let accept = handoff::Accept {
        connmgr: zhttp.connmgr.clone(),
        id: zhttp.id().to_owned(),
        in_seq,
        out_seq,
        credits: u32::try_from(zhttp.endpoint.credits()).unwrap_or(u32::MAX),
        peer_address: zhttp.peer.clone(),
        request,
        response,
        started,
        cross_origin,
        hold,
        origin,
    };
    match format::encode(&accept, zhttp.shared.sockets.format) {
        Ok(frame) => {
            if handler.send(vec![frame]).await.is_err() {
                tracing::warn!(session = %zhttp.id(), "handler socket closed; held session lost");
            }
        }
        Err(err) => {
            tracing::warn!(session = %zhttp.id(), error = %err, "hand-over not encoded")
        }
    }
    (code, "held")
}

/// Waits for connmgr's `handoff-proceed`; false when it cancels instead.
async fn proceeded(zhttp: &mut Zhttp) -> bool {
    while let Some(packet) = zhttp.inbox.recv().await {
        if !zhttp.take_in(&packet) {
            return false;
        }
        match packet.kind() {
            PacketType::HandoffProceed => return true,
            PacketType::Cancel | PacketType::Error => return false,
            _ => {}
        }
    }
    false
}
