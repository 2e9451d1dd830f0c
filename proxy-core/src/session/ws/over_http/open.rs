//! The WebSocket-over-HTTP handshake: `OPEN` to the origin, and the client
//! accepted (`101`) or refused with the origin's own answer.

use super::gateway::{accepted_events, client_headers, exchange, Answer, Gateway, NOT_REPLAYED};
use crate::error::ProxyError;
use crate::origin::forward::signer_for;
use crate::origin::headers::{origin_headers, rewrite_path, Forward};
use crate::origin::target_base;
use crate::prepare::Prepared;
use crate::routes::Target;
use crate::session::request_body::REQUEST_WINDOW;
use crate::session::ws::grip::Grip;
use crate::session::zhttp::{Ended, Zhttp};
use bytes::Bytes;
use holdfast_protocol::wsevents::{Event, EventKind};
use holdfast_protocol::zhttp::{is_hop_by_hop, PacketType};

/// A WebSocket-over-HTTP connection the origin accepted: what the rest of
/// the session needs.
pub(super) struct Opened {
    /// The exchange's state.
    pub gateway: Box<Gateway>,
    /// GRIP, as the accepting answer asked.
    pub grip: Grip,
    /// The events of the answer to `OPEN`, after the `OPEN` itself.
    pub events: Vec<Event>,
}

/// The handshake (`Err` with the session's status and outcome when it
/// ends here). Its future is boxed by the caller and gone once the
/// connection is open: the client's request, the origin's first answer
/// and the origin client's future are not kept for the connection's life.
pub(super) async fn open(zhttp: &mut Zhttp, prepared: Box<Prepared>) -> Result<Opened, Ended> {
    let debug = zhttp.shared.debug || prepared.route.debug;
    let Some(target) = prepared.route.targets.iter().find(|t| t.over_http).cloned() else {
        let code = zhttp.fail_with(&ProxyError::HoldUnsupported, debug).await;
        return Err((code, "no target"));
    };
    let mut gateway = gateway_for(zhttp, &prepared, target);
    let open = [Event::new(EventKind::Open, Bytes::new())];
    let request = gateway.request(&open, 0);
    let answer = match exchange(zhttp.shared.client.clone(), gateway.target.clone(), request).await
    {
        Ok(answer) => answer,
        Err(err) => return Err((zhttp.fail_with(&err, debug).await, "origin error")),
    };
    let events = match accepted_events(&answer) {
        Some(Ok(events)) if events.first().map(|e| &e.kind) == Some(&EventKind::Open) => events,
        Some(Ok(events))
            if events.is_empty() && answer.headers.contains_key("keep-alive-interval") =>
        {
            events
        }
        Some(Ok(_)) | Some(Err(_)) if answer.status == 200 => {
            let err = ProxyError::origin_body(
                "WebSocket-over-HTTP answer to OPEN did not start with OPEN",
            );
            return Err((zhttp.fail_with(&err, debug).await, "origin error"));
        }
        _ => return Err(refuse(zhttp, &answer).await),
    };
    gateway.absorb(&answer.headers);
    let channel_prefix = prepared.route.prefix.clone().unwrap_or_default();
    let grip = Grip::of(zhttp, &answer.headers, channel_prefix);
    accept(zhttp, &answer).await;
    Ok(Opened {
        gateway: Box::new(gateway),
        grip,
        events: events.into_iter().skip(1).collect(),
    })
}

/// The exchange's state for `target`: the headers every request replays
/// (the proxy's and the client's, without its handshake's own).
fn gateway_for(zhttp: &Zhttp, prepared: &Prepared, target: Target) -> Gateway {
    let route = &prepared.route;
    let forward = Forward {
        headers: &prepared.headers,
        peer: prepared.peer.as_deref(),
        tls: prepared.tls,
        trusted: prepared.trusted,
        route,
        target: &target,
        signature: None,
        session: None,
    };
    let mut headers = origin_headers(&forward, &zhttp.shared.rules);
    let remove: Vec<http::HeaderName> = headers
        .keys()
        .filter(|n| {
            NOT_REPLAYED.contains(&n.as_str())
                || n.as_str().starts_with("meta-")
                || is_hop_by_hop(n.as_str())
        })
        .cloned()
        .collect();
    for name in remove {
        headers.remove(name);
    }
    Gateway {
        uri: format!(
            "{}{}",
            target_base(&target),
            rewrite_path(&prepared.path, route)
        ),
        target,
        headers: headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        signer: signer_for(&zhttp.shared, route, prepared.trusted),
        connection_id: format!("{}-{}", zhttp.connmgr, zhttp.id()),
        meta: Vec::new(),
        keep_alive: None,
        detached: false,
    }
}

/// Refused: the origin's answer goes to the client.
async fn refuse(zhttp: &mut Zhttp, answer: &Answer) -> Ended {
    let mut packet = zhttp.packet(PacketType::Data);
    packet.code = Some(answer.status);
    packet.reason = http::StatusCode::from_u16(answer.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(str::to_owned);
    packet.headers = Some(client_headers(&answer.headers, &["content-length"]));
    packet.body = Some(answer.body.clone());
    zhttp.send(packet).await;
    (answer.status, "websocket refused by origin")
}

/// Accepted: the client's `101`, with the window for its messages.
async fn accept(zhttp: &mut Zhttp, answer: &Answer) {
    let mut accept = zhttp.packet(PacketType::Data);
    accept.code = Some(101);
    accept.reason = Some("Switching Protocols".into());
    accept.headers = Some(client_headers(
        &answer.headers,
        &[
            "content-length",
            "content-type",
            "keep-alive-interval",
            "sec-websocket-extensions",
        ],
    ));
    accept.credits = Some(zhttp.endpoint.offer(REQUEST_WINDOW as usize));
    zhttp.endpoint.set_overshoot(zhttp.shared.max_message_size);
    zhttp.send(accept).await;
}
