//! SockJS (route options `sockjs=<prefix>` and `sockjs_as_path=<path>`), as
//! Pushpin offers it: browsers with the sockjs-client library talk to
//! `<prefix>/...` over whichever transport they can (WebSocket,
//! xhr-streaming, EventSource, xhr-polling, JSONP polling, and the iframe
//! ones through `/iframe.html`, which loads `[proxy] sockjs_url`; not
//! htmlfile), and the origin sees one
//! WebSocket per SockJS session, at `sockjs_as_path` (by default the
//! prefix), through the route's targets as any WebSocket of the route
//! (GRIP and WebSocket-over-HTTP included). `<prefix>/websocket` is a
//! plain WebSocket to that path.
//!
//! - this file: the endpoints under the prefix (`/info`, the session URLs,
//!   `/websocket`) and the answers that are not transports.
//! - [`transport`]: receiving connections over HTTP (polling, streaming,
//!   EventSource, JSONP), each carrying one session's frames to its client
//!   within connmgr's credits.
//! - [`websocket`]: the WebSocket transport.
//! - [`frames`]: the SockJS framing.
//! - [`registry`]: the live sessions, their frames and their clients'
//!   messages.
//! - [`peer`]: the task that stands for a session's client toward the
//!   origin.

mod frames;
mod peer;
pub(crate) mod registry;
mod transport;
mod websocket;

use crate::origin::jsonp::valid_callback;
use crate::prepare::Prepared;
use crate::session::request_body::RequestBody;
use crate::session::ws;
use crate::session::zhttp::{Ended, Zhttp};
use bytes::Bytes;
use holdfast_protocol::zhttp::Header;
use registry::{Opener, SockSession};
use std::sync::Arc;
use std::time::Duration;
use transport::Transport;

/// How often a session with nothing to say sends `h`.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(25);

/// Largest `xhr_send` body.
const MAX_SEND: usize = 100_000;

/// Whether a request is for the route's SockJS endpoints.
pub(crate) fn applies(prepared: &Prepared) -> bool {
    let path = prepared.path.split('?').next().unwrap_or("");
    prepared
        .route
        .sockjs
        .as_deref()
        .is_some_and(|prefix| path == prefix || path.starts_with(&format!("{prefix}/")))
}

/// The parts of a session URL: `/<server>/<session>/<transport>`.
fn session_url(rest: &str) -> Option<(&str, &str)> {
    let mut parts = rest.strip_prefix('/')?.split('/');
    let (server, session, transport) = (parts.next()?, parts.next()?, parts.next()?);
    let fine = |s: &str| !s.is_empty() && !s.contains('.');
    (parts.next().is_none() && fine(server) && fine(session)).then_some((session, transport))
}

/// A session's name: its host, the route's prefix and the client's id.
fn session_key(prepared: &Prepared, prefix: &str, id: &str) -> String {
    format!("{}{prefix} {id}", prepared.host)
}

/// Headers every SockJS answer carries: no caching, and the caller's
/// origin allowed with credentials (SockJS clients on other origins).
pub(super) fn common_headers(request: &[Header]) -> Vec<Header> {
    let origin = request
        .iter()
        .find(|Header(n, _)| n.eq_ignore_ascii_case("origin"))
        .map(|Header(_, v)| v.clone())
        .filter(|v| !v.is_empty() && &v[..] != b"null")
        .unwrap_or_else(|| Bytes::from_static(b"*"));
    vec![
        Header(
            "Cache-Control".into(),
            Bytes::from_static(b"no-store, no-cache, no-transform, must-revalidate, max-age=0"),
        ),
        Header("Access-Control-Allow-Origin".into(), origin),
        Header(
            "Access-Control-Allow-Credentials".into(),
            Bytes::from_static(b"true"),
        ),
    ]
}

/// A header from a name and a value.
pub(super) fn header(name: &str, value: impl Into<Bytes>) -> Header {
    Header(name.to_owned(), value.into())
}

/// Serves a request under the route's SockJS prefix.
pub(crate) async fn serve(
    zhttp: &mut Zhttp,
    mut body: RequestBody,
    mut prepared: Box<Prepared>,
) -> Ended {
    let prefix = prepared.route.sockjs.clone().unwrap_or_default();
    let path = prepared.path.split('?').next().unwrap_or("").to_owned();
    let rest = path[prefix.len()..].to_owned();
    let method = prepared.method.as_str().to_owned();
    if prepared.websocket {
        if rest == "/websocket" {
            // A plain WebSocket, to the path the origin knows.
            prepared.path = match &prepared.route.sockjs_as_path {
                Some(as_path) => as_path.clone(),
                None => format!("{prefix}/websocket"),
            };
            prepared.route.sockjs = None;
            return Box::pin(ws::serve(zhttp, prepared)).await;
        }
        return match session_url(&rest) {
            Some((id, "websocket")) if method == "GET" => {
                let key = session_key(&prepared, &prefix, id);
                websocket::serve(zhttp, &prepared, &key).await
            }
            _ => plain(zhttp, &prepared, 404, "Not Found").await,
        };
    }
    if method == "OPTIONS" {
        let mut headers = common_headers(&prepared.headers);
        let allowed: &[u8] = if rest.starts_with("/info") {
            b"OPTIONS, GET"
        } else {
            b"OPTIONS, POST"
        };
        headers.push(header("Access-Control-Allow-Methods", allowed));
        headers.push(header("Access-Control-Max-Age", "31536000"));
        if let Some(asked) = prepared
            .headers
            .iter()
            .find(|Header(n, _)| n.eq_ignore_ascii_case("access-control-request-headers"))
        {
            headers.push(header("Access-Control-Allow-Headers", asked.1.clone()));
        }
        zhttp.respond(204, headers, Bytes::new()).await;
        return (204, "sockjs options");
    }
    match (method.as_str(), rest.as_str()) {
        ("GET", "" | "/") => {
            let mut headers = common_headers(&prepared.headers);
            headers.push(header("Content-Type", "text/plain; charset=UTF-8"));
            zhttp
                .respond(200, headers, Bytes::from_static(b"Welcome to SockJS!\n"))
                .await;
            return (200, "sockjs welcome");
        }
        ("GET", iframe) if is_iframe(iframe) => return iframe_answer(zhttp, &prepared).await,
        ("GET", "/info" | "/info/") => {
            let info = serde_json::json!({
                "websocket": true,
                "origins": ["*:*"],
                "cookie_needed": false,
                "entropy": rand_entropy(),
            });
            let mut headers = common_headers(&prepared.headers);
            headers.push(header("Content-Type", "application/json; charset=UTF-8"));
            zhttp
                .respond(200, headers, Bytes::from(format!("{info}\n")))
                .await;
            return (200, "sockjs info");
        }
        _ => {}
    }
    let Some((id, transport)) = session_url(&rest) else {
        return plain(zhttp, &prepared, 404, "Not Found").await;
    };
    let key = session_key(&prepared, &prefix, id);
    match (method.as_str(), transport) {
        ("POST", "xhr") => transport::receive(zhttp, &prepared, &key, Transport::Polling).await,
        ("POST", "xhr_streaming") => {
            transport::receive(zhttp, &prepared, &key, Transport::Streaming).await
        }
        ("GET", "eventsource") => {
            transport::receive(zhttp, &prepared, &key, Transport::EventSource).await
        }
        ("GET", "jsonp") => match query_value(&prepared.path, &["c", "callback"]) {
            Some(callback) if valid_callback(&callback) => {
                transport::receive(zhttp, &prepared, &key, Transport::Jsonp(callback)).await
            }
            _ => plain(zhttp, &prepared, 500, "\"callback\" parameter required").await,
        },
        ("POST", "xhr_send") => send(zhttp, &mut body, &prepared, &key, false).await,
        ("POST", "jsonp_send") => send(zhttp, &mut body, &prepared, &key, true).await,
        _ => plain(zhttp, &prepared, 404, "Not Found").await,
    }
}

/// The session `key`, started for this request if it is new.
pub(super) fn session_for(zhttp: &Zhttp, prepared: &Prepared, key: &str) -> Arc<SockSession> {
    peer::session(&zhttp.shared, key, || {
        let prefix = prepared.route.sockjs.clone().unwrap_or_default();
        let as_path = prepared.route.sockjs_as_path.clone().unwrap_or(prefix);
        let scheme = if prepared.tls { "wss" } else { "ws" };
        let mut route = prepared.route.clone();
        route.sockjs = None;
        let headers = prepared
            .headers
            .iter()
            .filter(|Header(n, _)| {
                !holdfast_protocol::zhttp::is_hop_by_hop(n)
                    && !n.eq_ignore_ascii_case("content-length")
                    && !n.eq_ignore_ascii_case("content-type")
            })
            .cloned()
            .collect();
        Opener {
            route,
            uri: format!("{scheme}://{}{as_path}", prepared.host),
            headers,
            peer: prepared.peer.clone(),
        }
    })
}

/// `xhr_send` (or `jsonp_send`, whose body may be a form with `d`): the
/// client's messages, passed on (waiting while too many wait for the
/// origin); 204 (`ok` for JSONP), or what is wrong.
async fn send(
    zhttp: &mut Zhttp,
    body: &mut RequestBody,
    prepared: &Prepared,
    key: &str,
    jsonp: bool,
) -> Ended {
    let Some(session) = zhttp.shared.sockjs.get(key) else {
        return plain(zhttp, prepared, 404, "Not Found").await;
    };
    if let Err(outcome) = body.finish(zhttp).await {
        return (0, outcome);
    }
    let body = match body.whole() {
        Some(request) if request.body.len() <= MAX_SEND => request.body.clone(),
        _ => return plain(zhttp, prepared, 413, "Payload too large.").await,
    };
    let form = prepared.headers.iter().any(|Header(n, v)| {
        n.eq_ignore_ascii_case("content-type")
            && v.starts_with(b"application/x-www-form-urlencoded")
    });
    let body = if jsonp && form {
        Bytes::from(form_value(&body, "d").unwrap_or_default())
    } else {
        body
    };
    let messages = match frames::messages(&body, false) {
        Ok(messages) => messages,
        Err(err) => return plain(zhttp, prepared, 500, &err.to_string()).await,
    };
    if !session.send(messages).await {
        return plain(zhttp, prepared, 404, "Not Found").await;
    }
    let mut headers = common_headers(&prepared.headers);
    headers.push(header("Content-Type", "text/plain; charset=UTF-8"));
    if jsonp {
        zhttp.respond(200, headers, Bytes::from_static(b"ok")).await;
        return (200, "sockjs send");
    }
    zhttp.respond(204, headers, Bytes::new()).await;
    (204, "sockjs send")
}

/// `/iframe.html` (or `/iframe<anything>.html`): the page iframe-based
/// transports run in, loading `[proxy] sockjs_url`; cached for a year,
/// `304` for its `ETag`.
async fn iframe_answer(zhttp: &mut Zhttp, prepared: &Prepared) -> Ended {
    let page = iframe_page(&zhttp.shared.sockjs_url);
    let etag = format!("\"{:016x}\"", fnv1a(page.as_bytes()));
    let mut headers = vec![
        header("ETag", etag.clone()),
        header("Cache-Control", "public, max-age=31536000"),
    ];
    let matches = prepared
        .headers
        .iter()
        .any(|Header(n, v)| n.eq_ignore_ascii_case("if-none-match") && v[..] == *etag.as_bytes());
    if matches {
        zhttp.respond(304, headers, Bytes::new()).await;
        return (304, "sockjs iframe");
    }
    headers.push(header("Content-Type", "text/html; charset=UTF-8"));
    zhttp.respond(200, headers, Bytes::from(page)).await;
    (200, "sockjs iframe")
}

/// A short text answer with the headers every SockJS answer carries.
async fn plain(zhttp: &mut Zhttp, prepared: &Prepared, code: u16, text: &str) -> Ended {
    let mut headers = common_headers(&prepared.headers);
    headers.push(header("Content-Type", "text/plain; charset=UTF-8"));
    zhttp
        .respond(code, headers, Bytes::from(format!("{text}\n")))
        .await;
    (code, "sockjs")
}

/// Whether a path under the prefix is the iframe page's.
fn is_iframe(path: &str) -> bool {
    path.strip_prefix("/iframe")
        .and_then(|rest| rest.strip_suffix(".html"))
        .is_some_and(|middle| !middle.contains('/'))
}

/// The page of iframe-based transports (SockJS's own wording).
fn iframe_page(sockjs_url: &str) -> String {
    let src = serde_json::Value::String(sockjs_url.to_owned()).to_string();
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  <script src={src}></script>\n  <script>\n    document.domain = document.domain;\n    SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>\n"
    )
}

/// FNV-1a, for the iframe page's `ETag`.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The first of `names` in the request's query, decoded.
fn query_value(path: &str, names: &[&str]) -> Option<String> {
    let query = path.split_once('?')?.1;
    names
        .iter()
        .find_map(|name| form_value(query.as_bytes(), name))
}

/// A value of a form (`a=1&b=2`, `+` for space), decoded.
fn form_value(form: &[u8], name: &str) -> Option<String> {
    let form = std::str::from_utf8(form).ok()?;
    form.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// `entropy` of `/info`: a number clients may use to seed themselves.
fn rand_entropy() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::frames::Frame;
    use super::*;

    #[test]
    fn session_urls() {
        assert_eq!(session_url("/000/abc/xhr"), Some(("abc", "xhr")));
        assert_eq!(session_url("/000/abc/xhr/x"), None);
        assert_eq!(session_url("/000/a.b/xhr"), None);
        assert_eq!(session_url("//abc/xhr"), None);
        assert_eq!(session_url("/info"), None);
    }

    #[test]
    fn jsonp_and_iframe_helpers() {
        assert_eq!(
            &Transport::Jsonp("cb".into()).write(&Frame::Messages(vec!["x".into()]))[..],
            b"/**/cb(\"a[\\\"x\\\"]\");\r\n"
        );
        assert_eq!(
            query_value("/x?c=f.g&d=1", &["c", "callback"]).as_deref(),
            Some("f.g")
        );
        assert_eq!(
            form_value(b"d=%5B%22a+b%22%5D", "d").as_deref(),
            Some("[\"a b\"]")
        );
        assert!(valid_callback("_jp.a1b2") && !valid_callback("alert(1)"));
        assert!(
            is_iframe("/iframe.html")
                && is_iframe("/iframe-a1.html")
                && !is_iframe("/iframe/x.html")
        );
        assert!(
            iframe_page("https://cdn/x.js").contains("<script src=\"https://cdn/x.js\"></script>")
        );
    }
}
