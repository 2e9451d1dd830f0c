//! Responses a held session sends that come from elsewhere: a published
//! `http-response` (on the timeout response's headers), and where an SSE
//! client was (its `Last-Event-ID`); and any response shaped for a
//! browser on another origin (route `aco`).

use bytes::Bytes;
use holdfast_protocol::handoff::{CrossOrigin, Request, Response};
use holdfast_protocol::zhttp::Header;

/// The response a long-poll gets for a published `http-response`: the
/// item's status, reason and body; headers inherited from the timeout
/// response unless the item sets them (same name replaced); `Grip-*` never
/// sent; Content-Length computed here.
pub fn published_response(
    timeout: &Response,
    item: &holdfast_protocol::publish::HttpResponse,
) -> Response {
    let code = item.code.unwrap_or(200);
    let reason = item.reason.clone().unwrap_or_else(|| {
        http::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_owned()
    });
    let overridden = |name: &str| {
        item.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut headers: Vec<Header> = timeout
        .headers
        .iter()
        .filter(|h| !overridden(&h.0) && !h.0.eq_ignore_ascii_case("content-length"))
        .cloned()
        .collect();
    headers.extend(
        item.headers
            .iter()
            .filter(|(n, _)| {
                !n.to_ascii_lowercase().starts_with("grip-")
                    && !n.eq_ignore_ascii_case("content-length")
            })
            .map(|(n, v)| Header(n.clone(), v.clone())),
    );
    headers.push(Header(
        "Content-Length".into(),
        Bytes::from(item.body.len().to_string()),
    ));
    Response {
        code,
        reason,
        headers,
        body: item.body.clone(),
    }
}

/// The SSE client's last event id, when its request carries one.
pub(super) fn last_event_id(request: &Request) -> Option<String> {
    request
        .headers
        .iter()
        .find(|h| h.0.eq_ignore_ascii_case("last-event-id"))
        .and_then(|h| std::str::from_utf8(&h.1).ok())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// A response shaped for the route's `aco`: CORS headers, or (a whole
/// long-poll answer) wrapped as JSON-P.
pub(super) fn cross_origin(
    response: Response,
    shape: Option<&CrossOrigin>,
    request: &Request,
    whole: bool,
) -> Response {
    use holdfast_grip::cross_origin::{apply_cors, jsonp_wrap};
    let Some(shape) = shape else {
        return response;
    };
    match (&shape.jsonp, whole) {
        (Some(jsonp), true) => {
            let (headers, body) = jsonp_wrap(
                jsonp,
                response.code,
                &response.reason,
                &response.headers,
                &response.body,
            );
            Response {
                code: 200,
                reason: "OK".into(),
                headers,
                body,
            }
        }
        _ => {
            let mut response = response;
            apply_cors(&request.headers, &mut response.headers);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_protocol::publish::HttpResponse;

    #[test]
    fn published_response_inherits_and_overrides_headers() {
        let timeout = Response {
            code: 200,
            reason: "OK".into(),
            headers: vec![
                Header("Content-Type".into(), Bytes::from_static(b"text/plain")),
                Header("X-Kept".into(), Bytes::from_static(b"1")),
                Header("Content-Length".into(), Bytes::from_static(b"99")),
            ],
            body: Bytes::from_static(b"timeout"),
        };
        let item = HttpResponse {
            code: Some(201),
            headers: vec![
                (
                    "content-type".into(),
                    Bytes::from_static(b"application/json"),
                ),
                ("Grip-X".into(), Bytes::from_static(b"no")),
            ],
            body: Bytes::from_static(b"{}"),
            ..HttpResponse::default()
        };
        let r = published_response(&timeout, &item);
        assert_eq!(
            (r.code, r.reason.as_str(), &r.body[..]),
            (201, "Created", &b"{}"[..])
        );
        let names: Vec<(&str, &[u8])> =
            r.headers.iter().map(|h| (h.0.as_str(), &h.1[..])).collect();
        assert_eq!(
            names,
            vec![
                ("X-Kept", &b"1"[..]),
                ("content-type", &b"application/json"[..]),
                ("Content-Length", &b"2"[..])
            ]
        );
    }
}
