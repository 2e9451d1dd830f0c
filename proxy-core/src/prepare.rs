//! A client request as the proxy reads it from connmgr's first packet:
//! its route (by host and path, or the one its local peer chose), whether
//! it came over TLS and from a trusted upstream (`Grip-Sig` checked against
//! `upstream_key`), its JSON-P rewrite on `aco` routes, and the copy kept
//! for a hand-over to the handler. Everything in [`Prepared`] is owned, so
//! the futures that send it are `'static`.

use crate::error::ProxyError;
use crate::origin::headers::is_tls;
use crate::routes::{Proto, RequestInfo, Route};
use crate::shared::Shared;
use bytes::Bytes;
use holdfast_protocol::handoff;
use holdfast_protocol::inspect::Inspected;
use holdfast_protocol::zhttp::{Header, Packet};
use holdfast_runtime::body::ChannelBody;

/// Everything needed to send the request.
pub struct Prepared {
    /// The route it matched.
    pub route: Route,
    /// Its method (after a JSON-P rewrite).
    pub method: http::Method,
    /// Its path and query (after a JSON-P rewrite).
    pub path: String,
    /// The client's headers.
    pub headers: Vec<Header>,
    /// The client's address.
    pub peer: Option<String>,
    /// Whether the client came over TLS (or a trusted proxy says so).
    pub tls: bool,
    /// Whether it came from a trusted upstream (`upstream_key`).
    pub trusted: bool,
    /// The body, when it came whole (or its first part, until
    /// [`Prepared::streaming_body`] takes over).
    pub body: Option<Bytes>,
    /// The body as it arrives, when it streams.
    pub streaming_body: Option<ChannelBody>,
    /// A WebSocket handshake (`ws://`/`wss://`).
    pub websocket: bool,
    /// The request's host, lower case, without port.
    pub host: String,
    /// Its client session, for routes with `session`.
    pub session: Option<Inspected>,
    /// Route `aco` (or `auto_cross_origin`): CORS headers, or JSON-P.
    pub cross_origin: Option<handoff::CrossOrigin>,
}

impl Prepared {
    /// The same request again (a background refresh), when its body came
    /// whole.
    pub fn replay(&self) -> Option<Prepared> {
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

/// Reads connmgr's first packet of a request: the request to send, and
/// the copy of it a hand-over carries (its body so far). `route` is used
/// as it is when the session's peer chose it (a SockJS session).
pub fn prepare(
    shared: &Shared,
    first: &Packet,
    route: Option<Route>,
) -> Result<(Prepared, handoff::Request), ProxyError> {
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
    let tls = is_tls(
        matches!(uri.scheme_str(), Some("https") | Some("wss")),
        &headers,
        &shared.rules,
    );
    let proto = if matches!(uri.scheme_str(), Some("ws") | Some("wss")) {
        Proto::Ws
    } else {
        Proto::Http
    };
    let route = match route {
        Some(route) => route,
        None => shared
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
    let trusted = match (&shared.upstream, first.header("grip-sig")) {
        (Some(verifier), Some(sig)) => std::str::from_utf8(sig).is_ok_and(|s| verifier.verify(s)),
        _ => false,
    };
    let mut request = Rewritten {
        method,
        path,
        headers,
        uri: uri.to_string(),
        body: first.body.clone().filter(|b| !b.is_empty()),
    };
    let cross_origin = if (route.aco || shared.auto_cross_origin) && proto == Proto::Http {
        Some(request.cross_origin(&route, &host)?)
    } else {
        None
    };
    let replay = handoff::Request {
        method: request.method.as_str().to_owned(),
        uri: request.uri,
        headers: request.headers.clone(),
        body: request.body.clone().unwrap_or_default(),
    };
    let prepared = Prepared {
        route,
        method: request.method,
        path: request.path,
        headers: request.headers,
        peer: first.peer_address.clone(),
        tls,
        trusted,
        body: request.body,
        streaming_body: None,
        websocket: proto == Proto::Ws,
        host: host_only,
        session: None,
        cross_origin,
    };
    Ok((prepared, replay))
}

/// The parts of a request a JSON-P rewrite may change.
struct Rewritten {
    method: http::Method,
    path: String,
    headers: Vec<Header>,
    uri: String,
    body: Option<Bytes>,
}

impl Rewritten {
    /// What an `aco` route does to a request: CORS headers on the answer,
    /// or, for a JSON-P request, the request it stands for.
    fn cross_origin(
        &mut self,
        route: &Route,
        host: &str,
    ) -> Result<handoff::CrossOrigin, ProxyError> {
        match crate::origin::jsonp::rewrite(&route.jsonp, &self.method, &self.path, &self.headers) {
            Ok(None) => Ok(handoff::CrossOrigin::default()),
            Ok(Some(jsonp)) => {
                self.uri = format!(
                    "{}://{host}{}",
                    self.uri.split("://").next().unwrap_or("http"),
                    jsonp.path
                );
                self.method = jsonp.method;
                self.path = jsonp.path;
                self.headers = jsonp.headers;
                self.body = jsonp.body;
                Ok(handoff::CrossOrigin {
                    jsonp: Some(jsonp.jsonp),
                })
            }
            Err(reason) => Err(ProxyError::BadRequest(reason)),
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
    use super::strip_port;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
