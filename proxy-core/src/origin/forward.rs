//! Sending a request to the route's targets: the URI and headers for each
//! (`X-Forwarded-*`, `Grip-Sig` with the route's or the default signer),
//! failover between targets, and what the handler is told about how the
//! origin was asked (for a hand-over).

use crate::error::ProxyError;
use crate::origin::body::OriginBody;
use crate::origin::headers::{origin_headers, rewrite_path, Forward};
use crate::origin::target_base;
use crate::prepare::Prepared;
use crate::routes::Route;
use crate::shared::Shared;
use bytes::Bytes;
use holdfast_grip::error_chain;
use holdfast_grip::sign::Signer;
use holdfast_protocol::handoff;
use holdfast_protocol::zhttp::Header;
use holdfast_runtime::body::HttpBody;
use std::sync::Arc;
use tokio::time::Instant;

/// The signer of requests to this route's targets, when they are signed
/// (GRIP routes, untrusted clients): the route's own, else the default.
pub(crate) fn signer_for(shared: &Shared, route: &Route, trusted: bool) -> Option<Signer> {
    if route.no_grip || trusted {
        return None;
    }
    Some(route_signer(route).unwrap_or_else(|| shared.signer.clone()))
}

/// The route's own signer (`sig_iss`/`sig_key`), if it has one.
fn route_signer(route: &Route) -> Option<Signer> {
    match (&route.sig_iss, &route.sig_key) {
        (None, None) => None,
        (iss, key) => Signer::new(
            iss.as_deref().unwrap_or("pushpin"),
            key.as_deref().unwrap_or("changeme"),
        )
        .map_err(|e| tracing::warn!(line = route.line, "route sig_key unusable: {e}"))
        .ok(),
    }
}

/// The origin's answer, and how it was asked (for a hand-over).
pub(crate) struct Forwarded {
    pub(crate) response: http::Response<OriginBody>,
    pub(crate) origin: handoff::Origin,
}

/// How a request goes to one target.
struct OriginRequest {
    uri: String,
    headers: http::HeaderMap,
    /// The same, for the handler (which may ask the origin again).
    origin: handoff::Origin,
}

/// The URI and headers for `target`, signed with `signature`.
fn origin_request(
    shared: &Shared,
    prepared: &Prepared,
    path: &str,
    target: &crate::routes::Target,
    signer: Option<&Signer>,
    signature: Option<String>,
) -> OriginRequest {
    let forward = Forward {
        headers: &prepared.headers,
        peer: prepared.peer.as_deref(),
        tls: prepared.tls,
        trusted: prepared.trusted,
        route: &prepared.route,
        target,
        signature,
        session: prepared.session.as_ref(),
    };
    let headers = origin_headers(&forward, &shared.rules);
    let uri = format!("{}{}", target_base(target), path);
    let origin = handoff::Origin {
        uri: uri.clone(),
        headers: headers
            .iter()
            .filter(|(name, _)| *name != "grip-sig")
            .map(|(name, value)| {
                Header(
                    name.as_str().to_owned(),
                    Bytes::copy_from_slice(value.as_bytes()),
                )
            })
            .collect(),
        sig: signer.map(Signer::spec),
        insecure: target.insecure,
        prefix: String::new(),
    };
    OriginRequest {
        uri,
        headers,
        origin,
    }
}

/// What the handler would be told about the origin of a request answered
/// without asking it (from the edge cache): its first target.
pub(crate) fn origin_of(shared: &Shared, prepared: &Prepared) -> Option<handoff::Origin> {
    let target = prepared.route.targets.first()?;
    let path = rewrite_path(&prepared.path, &prepared.route);
    let signer = signer_for(shared, &prepared.route, prepared.trusted);
    let request = origin_request(shared, prepared, &path, target, signer.as_ref(), None);
    Some(request.origin)
}

/// Sends the request to the route's targets in order. A target that cannot
/// be connected to is skipped for the next one, when the body can be sent
/// again (it arrived whole); a streamed body goes to the first target only.
pub(crate) async fn forward(
    shared: Arc<Shared>,
    mut prepared: Prepared,
) -> Result<Forwarded, ProxyError> {
    let path = rewrite_path(&prepared.path, &prepared.route);
    let signer = signer_for(&shared, &prepared.route, prepared.trusted);
    let signature = signer.as_ref().and_then(Signer::token);
    let mut last_error = String::new();
    let mut last_target = String::new();
    let targets = prepared.route.targets.clone();
    for (index, target) in targets.iter().enumerate() {
        let request = origin_request(
            &shared,
            &prepared,
            &path,
            target,
            signer.as_ref(),
            signature.clone(),
        );
        let body = match prepared.streaming_body.take() {
            Some(stream) => HttpBody::Stream(stream),
            None => HttpBody::Full(prepared.body.clone()),
        };
        let replayable = matches!(body, HttpBody::Full(_));
        let mut req = http::Request::new(body);
        *req.method_mut() = prepared.method.clone();
        *req.uri_mut() = request
            .uri
            .parse()
            .map_err(|_| ProxyError::BadRequest(format!("unusable origin URI {}", request.uri)))?;
        *req.headers_mut() = request.headers;
        last_target = format!("{}:{}", target.host, target.port);
        let asked = Instant::now();
        let sent = shared.client.request(target.insecure, req).await;
        shared.metrics.origin_latency.observe(asked.elapsed());
        match sent {
            Ok(response) => {
                return Ok(Forwarded {
                    response: response.map(OriginBody::Live),
                    origin: request.origin,
                })
            }
            Err(err) => {
                last_error = error_chain(&err);
                let more = index + 1 < targets.len();
                if err.is_connect() && replayable && more {
                    tracing::warn!(target = %last_target, error = %last_error, "origin unreachable; trying the next target");
                    continue;
                }
                break;
            }
        }
    }
    Err(ProxyError::Origin {
        target: last_target,
        reason: last_error,
    })
}
