//! `POST /publish/` on the HTTP publish port, as Pushpin's control API:
//! `{"items": [...]}` → `200 Published` (JSON when `Accept` asks for it),
//! errors as 4xx with a message saying what is wrong. A bad item refuses the
//! whole request: nothing is half-published. The same port serves
//! `GET /metrics` and `GET /health` ([`crate::metrics`]), without the
//! publish credentials. With a bus, 200 means the bus confirmed the items;
//! when it cannot, the answer is 503 with `Retry-After`.

use super::auth::Auth;
use super::{Refused, Sink};
use crate::engine::Input;
use crate::metrics::Metrics;
use bytes::Bytes;
use holdfast_protocol::publish::parse_items_json;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest publish body accepted by default (Pushpin's
/// `push_in_http_max_body_size`).
pub const DEFAULT_MAX_BODY: usize = 1_000_000;

/// What the publish API requires of a request.
pub struct Api {
    /// Credentials, when configured.
    pub auth: Auth,
    /// Largest body accepted, bytes.
    pub max_body: usize,
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// The status page and its stream (streamed bodies), else [`handle`].
async fn route(
    req: Request<Incoming>,
    items: Sink,
    api: Arc<Api>,
    metrics: Arc<Metrics>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    if req.method() == Method::GET {
        let content_type = match req.uri().path() {
            "/_holdfast" | "/_holdfast/" => Some("text/html; charset=utf-8"),
            "/_holdfast/events" => Some("text/event-stream"),
            "/_holdfast/snapshot" => Some("application/json"),
            _ => None,
        };
        if let Some(content_type) = content_type {
            let body = if content_type == "text/event-stream" {
                crate::status::Events::new(metrics).boxed()
            } else if content_type == "application/json" {
                Full::new(Bytes::from(metrics.snapshot().to_string())).boxed()
            } else {
                Full::new(Bytes::from_static(crate::status::PAGE.as_bytes())).boxed()
            };
            let mut resp = Response::new(body);
            let headers = resp.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            headers.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            return Ok(resp);
        }
    }
    let resp = handle(req, items, &api, metrics).await?;
    Ok(resp.map(BodyExt::boxed))
}

async fn handle(
    req: Request<Incoming>,
    items: Sink,
    api: &Api,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    // Read-only and without secrets: open to scrapers and probes.
    if path == "/metrics" && req.method() == Method::GET {
        let mut resp = Response::new(Full::new(Bytes::from(metrics.render())));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return Ok(resp);
    }
    if path == "/health" && req.method() == Method::GET {
        let (healthy, body) = metrics.health();
        let mut resp = Response::new(Full::new(Bytes::from(body + "\n")));
        if !healthy {
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(reason) = api.auth.check(authorization) {
        let mut resp = text(
            StatusCode::UNAUTHORIZED,
            &format!("Unauthorized: {reason}."),
        );
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return Ok(resp);
    }
    if path == "/" {
        return Ok(text(StatusCode::OK, "Holdfast publish API"));
    }
    let recover = path == "/recover" || path == "/recover/";
    if path != "/publish" && path != "/publish/" && !recover {
        return Ok(text(StatusCode::NOT_FOUND, "Not found."));
    }
    if req.method() != Method::POST {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed: use POST.",
        );
        resp.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return Ok(resp);
    }
    if recover {
        if items.local(Input::Recover).await.is_err() {
            return Ok(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Handler is shutting down.",
            ));
        }
        tracing::info!("POST {path} -> 200");
        return Ok(text(StatusCode::OK, "Updated"));
    }
    let wants_json = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let body = match Limited::new(req.into_body(), api.max_body).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Body is larger than {} bytes.", api.max_body),
            ))
        }
    };
    let parsed = match parse_items_json(&body) {
        Ok(parsed) => parsed,
        Err(err) => {
            tracing::info!("publish refused: {err}");
            return Ok(text(StatusCode::BAD_REQUEST, &err.to_string()));
        }
    };
    let count = parsed.len();
    if let Err(refused) = items.publish(parsed).await {
        tracing::warn!("POST {path} -> 503 items={count}: {refused}");
        let advice = match refused {
            Refused::Closed => "",
            Refused::Bus(_) => " Try again later.",
        };
        let mut resp = text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Service unavailable: {refused}.{advice}"),
        );
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        return Ok(resp);
    }
    tracing::info!("POST {path} -> 200 items={count}");
    if wants_json {
        let mut resp = Response::new(Full::new(Bytes::from_static(
            b"{\"message\": \"Published\"}",
        )));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    Ok(text(StatusCode::OK, "Published"))
}

/// Serves the publish API on `addr` until `token` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    items: Sink,
    api: Api,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("publish HTTP on {}", listener.local_addr()?);
    let api = Arc::new(api);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "publish accept failed");
                        continue;
                    }
                },
                _ = token.cancelled() => return,
            };
            let (items, api, metrics) = (items.clone(), api.clone(), metrics.clone());
            tokio::spawn(async move {
                let service =
                    service_fn(move |req| route(req, items.clone(), api.clone(), metrics.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}
