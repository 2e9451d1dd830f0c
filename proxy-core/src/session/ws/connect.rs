//! The proxy's own WebSocket handshake with a route's target, for a
//! client's: the proxy's headers, `Grip-Sig`, the client's subprotocols,
//! `Sec-WebSocket-Extensions: grip` on GRIP routes; plain or TLS. Targets
//! are tried in order while they refuse the connection; an HTTP answer
//! other than `101` is a refusal, which goes to the client as it is.

use crate::error::ProxyError;
use crate::origin::forward::signer_for;
use crate::origin::headers::{origin_headers, rewrite_path, Forward};
use crate::prepare::Prepared;
use crate::routes::Target;
use crate::shared::Shared;
use bytes::Bytes;
use holdfast_grip::sign::Signer;
use holdfast_protocol::zhttp::{is_hop_by_hop, Header};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

/// How long connecting and the handshake with the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Client handshake headers the proxy's own handshake replaces.
const HANDSHAKE_HEADERS: &[&str] = &[
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "upgrade",
    "connection",
    "host",
];

/// A connection to a target, plain or TLS.
pub(super) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// What the target answered.
pub(super) enum Connected {
    /// `101`: the connection, and the answer's head.
    Open(
        Box<WebSocketStream<Box<dyn Io>>>,
        http::Response<Option<Vec<u8>>>,
    ),
    /// Any other answer.
    Refused(http::Response<Option<Vec<u8>>>),
}

/// Connects to the route's targets in order, until one answers.
pub(super) async fn connect(shared: &Shared, prepared: &Prepared) -> Result<Connected, ProxyError> {
    let route = &prepared.route;
    let signer = signer_for(shared, route, prepared.trusted);
    let path = rewrite_path(&prepared.path, route);
    let mut last = (String::new(), String::from("no target"));
    for target in &route.targets {
        let target_name = format!("{}:{}", target.host, target.port);
        let request = handshake(shared, prepared, target, signer.as_ref(), &path)?;
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, dial(shared, target, request)).await;
        match attempt {
            Ok(Ok((ws, response))) => return Ok(Connected::Open(Box::new(ws), response)),
            Ok(Err(err)) => {
                if let Some(WsError::Http(response)) =
                    err.get_ref().and_then(|e| e.downcast_ref::<WsError>())
                {
                    return Ok(Connected::Refused((**response).clone()));
                }
                last = (target_name, err.to_string());
                if err.kind() == std::io::ErrorKind::ConnectionRefused {
                    continue;
                }
                break;
            }
            Err(_) => {
                last = (target_name, "no answer to the WebSocket handshake".into());
                break;
            }
        }
    }
    Err(ProxyError::Origin {
        target: last.0,
        reason: last.1,
    })
}

/// The handshake request for `target`: the proxy's headers for the
/// origin, without the client's own handshake headers.
fn handshake(
    shared: &Shared,
    prepared: &Prepared,
    target: &Target,
    signer: Option<&Signer>,
    path: &str,
) -> Result<Request, ProxyError> {
    let target_name = format!("{}:{}", target.host, target.port);
    let forward = Forward {
        headers: &prepared.headers,
        peer: prepared.peer.as_deref(),
        tls: prepared.tls,
        trusted: prepared.trusted,
        route: &prepared.route,
        target,
        signature: signer.and_then(Signer::token),
        session: None,
    };
    let headers = origin_headers(&forward, &shared.rules);
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| target_name.clone());
    let scheme = if target.ssl { "wss" } else { "ws" };
    let uri = format!("{scheme}://{target_name}{path}");
    let mut request = uri
        .as_str()
        .into_client_request()
        .map_err(|e| ProxyError::BadRequest(format!("unusable WebSocket URI {uri}: {e}")))?;
    let out = request.headers_mut();
    for (name, value) in headers.iter() {
        if HANDSHAKE_HEADERS.contains(&name.as_str()) || is_hop_by_hop(name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Ok(host) = http::HeaderValue::from_str(&host) {
        out.insert(http::header::HOST, host);
    }
    if let Ok(key) = http::HeaderValue::from_str(&generate_key()) {
        out.insert("sec-websocket-key", key);
    }
    if !prepared.route.no_grip {
        // Tell GRIP libraries this proxy speaks GRIP over WebSocket.
        out.insert(
            "sec-websocket-extensions",
            http::HeaderValue::from_static("grip"),
        );
    }
    Ok(request)
}

/// Connects to `target` (TLS where it says) and makes the handshake.
async fn dial(
    shared: &Shared,
    target: &Target,
    request: Request,
) -> std::io::Result<(
    WebSocketStream<Box<dyn Io>>,
    http::Response<Option<Vec<u8>>>,
)> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if target.ssl {
        let config =
            holdfast_grip::client::tls_config(target.insecure).map_err(std::io::Error::other)?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(std::io::Error::other)?;
        Box::new(
            tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?,
        )
    } else {
        Box::new(tcp)
    };
    let config = holdfast_runtime::ws::config(shared.max_message_size);
    tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(std::io::Error::other)
}

/// The target's answer headers for connmgr (which writes the upgrade
/// headers itself).
pub(super) fn response_headers(response: &http::Response<Option<Vec<u8>>>) -> Vec<Header> {
    response
        .headers()
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name.as_str()) && name.as_str() != "sec-websocket-accept"
        })
        .map(|(name, value)| {
            Header(
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect()
}
