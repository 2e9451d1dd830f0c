//! JSON-P requests (route `aco`): a `GET` carrying a callback parameter
//! becomes the request it stands for, built from its query parameters:
//! `_method` (else the route's `jsonp_defmethod`), `_headers` (a JSON
//! object), and the body from the route's `jsonp_body` parameter (sent as
//! JSON) or `_body`. Those parameters leave the query; the rest stays.
//! Values are percent-decoded (`+` is not a space). The answer is wrapped
//! by [`holdfast_grip::cross_origin::jsonp_wrap`].

use crate::routes::JsonpConfig;
use bytes::Bytes;
use holdfast_protocol::handoff::Jsonp;
use holdfast_protocol::zhttp::Header;
use percent_encoding::percent_decode_str;

/// The request a JSON-P `GET` stands for.
#[derive(Debug, PartialEq)]
pub struct JsonpRequest {
    /// Method to send.
    pub method: http::Method,
    /// Path and the query left.
    pub path: String,
    /// Headers: `_headers`, then the client's (but `Accept`, now `*/*`).
    pub headers: Vec<Header>,
    /// Body, from the body parameter.
    pub body: Option<Bytes>,
    /// How the answer is wrapped.
    pub jsonp: Jsonp,
}

/// One `name=value` of a query, as written and decoded.
struct Param<'a> {
    raw: &'a str,
    name: String,
    value: Option<String>,
}

fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

/// A callback the wrapped answer may call safely: a JavaScript name or
/// member path (letters, digits, `_`, `$`, `.`, `[`, `]`). SockJS's JSONP
/// transport checks its callbacks with it too.
pub fn valid_callback(callback: &str) -> bool {
    !callback.is_empty()
        && callback.len() <= 256
        && callback
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_$.[]".contains(c))
}

/// `Ok(None)`: not a JSON-P request, forward it as it is. `Err`: a JSON-P
/// request with a parameter that cannot be used (400, saying which).
pub fn rewrite(
    config: &JsonpConfig,
    method: &http::Method,
    path: &str,
    headers: &[Header],
) -> Result<Option<JsonpRequest>, String> {
    if method != http::Method::GET {
        return Ok(None);
    }
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let params: Vec<Param<'_>> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|raw| {
            let (name, value) = raw.split_once('=').unwrap_or((raw, ""));
            Param {
                raw,
                name: decode(name).unwrap_or_default(),
                value: decode(value),
            }
        })
        .collect();
    let find = |name: &str| params.iter().find(|p| p.name == name);
    let callback_param = config.callback_param.as_str();
    let body_param = config.body_param.as_deref();
    let callback = match (find(callback_param), &config.default_callback, body_param) {
        (Some(p), _, _) => match p.value.as_deref() {
            Some(v) if valid_callback(v) => v.to_owned(),
            _ => return Err("Invalid callback parameter.".into()),
        },
        (None, Some(default), Some(body)) if find(body).is_some() => default.clone(),
        _ => return Ok(None),
    };
    let method = match find("_method") {
        None => config.default_method(),
        Some(p) => p
            .value
            .as_deref()
            .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
            .ok_or("Invalid _method parameter.")?,
    };
    let mut out_headers = Vec::new();
    if let Some(p) = find("_headers") {
        let parsed: serde_json::Value = p
            .value
            .as_deref()
            .and_then(|v| serde_json::from_str(v).ok())
            .ok_or("Invalid _headers parameter.")?;
        let serde_json::Value::Object(map) = parsed else {
            return Err("Invalid _headers parameter.".into());
        };
        for (name, value) in map {
            let value = value.as_str().ok_or("Invalid _headers parameter.")?;
            let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && http::HeaderValue::from_str(value).is_ok();
            if !valid {
                return Err("Invalid _headers parameter.".into());
            }
            if !name.eq_ignore_ascii_case("host") && !name.eq_ignore_ascii_case("accept") {
                out_headers.push(Header(name, Bytes::from(value.to_owned())));
            }
        }
    }
    let (body_name, body_is_json) = match body_param {
        Some(name) => (name, true),
        None => ("_body", false),
    };
    let body = match find(body_name) {
        None => None,
        Some(p) => Some(Bytes::from(
            p.value
                .clone()
                .ok_or_else(|| format!("Invalid {body_name} parameter."))?,
        )),
    };
    if body.is_some() && body_is_json {
        out_headers.retain(|Header(n, _)| !n.eq_ignore_ascii_case("content-type"));
        out_headers.push(Header(
            "Content-Type".into(),
            Bytes::from_static(b"application/json"),
        ));
    }
    out_headers.push(Header("Accept".into(), Bytes::from_static(b"*/*")));
    out_headers.extend(
        headers
            .iter()
            .filter(|Header(n, _)| !n.eq_ignore_ascii_case("accept"))
            .filter(|Header(n, _)| {
                !(body.is_some() && body_is_json && n.eq_ignore_ascii_case("content-type"))
            })
            .cloned(),
    );
    let consumed = [callback_param, "_method", "_headers", body_name];
    let rest: Vec<&str> = params
        .iter()
        .filter(|p| !consumed.contains(&p.name.as_str()))
        .map(|p| p.raw)
        .collect();
    let path = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok(Some(JsonpRequest {
        method,
        path,
        headers: out_headers,
        body,
        jsonp: Jsonp {
            callback,
            extended: config.extended,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JsonpConfig {
        JsonpConfig::default()
    }

    fn get<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
        headers
            .iter()
            .find(|Header(n, _)| n.eq_ignore_ascii_case(name))
            .map(|Header(_, v)| &v[..])
    }

    #[test]
    fn not_jsonp() {
        let c = config();
        assert_eq!(rewrite(&c, &http::Method::GET, "/a?x=1", &[]), Ok(None));
        assert_eq!(
            rewrite(&c, &http::Method::POST, "/a?callback=f", &[]),
            Ok(None)
        );
    }

    #[test]
    fn a_get_becomes_the_request_it_stands_for() {
        let c = config();
        let headers = [
            Header("Host".into(), Bytes::from_static(b"h")),
            Header("Accept".into(), Bytes::from_static(b"text/html")),
        ];
        let r = rewrite(
            &c,
            &http::Method::GET,
            "/items?x=1&callback=app.got&_method=POST&_headers=%7B%22X-A%22%3A%221%22%7D&_body=hi%20there&y=2",
            &headers,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.path, "/items?x=1&y=2");
        assert_eq!(r.body.as_deref(), Some(&b"hi there"[..]));
        assert_eq!(get(&r.headers, "x-a"), Some(&b"1"[..]));
        assert_eq!(get(&r.headers, "accept"), Some(&b"*/*"[..]));
        assert_eq!(get(&r.headers, "host"), Some(&b"h"[..]));
        assert_eq!(r.jsonp.callback, "app.got");
        assert!(r.jsonp.extended);
        // Only the callback: the default method of extended mode, GET.
        let r = rewrite(&c, &http::Method::GET, "/p?callback=f", &[])
            .unwrap()
            .unwrap();
        assert_eq!((r.method, r.path.as_str()), (http::Method::GET, "/p"));
    }

    #[test]
    fn a_default_callback_with_a_body_parameter() {
        let c = JsonpConfig {
            extended: false,
            body_param: Some("data".into()),
            default_callback: Some("cb".into()),
            ..JsonpConfig::default()
        };
        let r = rewrite(&c, &http::Method::GET, "/p?data=%7B%7D", &[])
            .unwrap()
            .unwrap();
        assert_eq!(r.method, http::Method::POST, "basic mode posts");
        assert_eq!(r.body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            get(&r.headers, "content-type"),
            Some(&b"application/json"[..])
        );
        assert_eq!(r.jsonp.callback, "cb");
        assert!(!r.jsonp.extended);
    }

    #[test]
    fn bad_parameters_say_which() {
        let c = config();
        for (path, message) in [
            ("/p?callback=", "Invalid callback parameter."),
            ("/p?callback=alert(1)", "Invalid callback parameter."),
            ("/p?callback=f&_method=B%20AD", "Invalid _method parameter."),
            (
                "/p?callback=f&_headers=%5B1%5D",
                "Invalid _headers parameter.",
            ),
            (
                "/p?callback=f&_headers=%7B%22A%22%3A1%7D",
                "Invalid _headers parameter.",
            ),
            ("/p?callback=f&_headers=nope", "Invalid _headers parameter."),
            ("/p?callback=f&_body=%FF", "Invalid _body parameter."),
        ] {
            assert_eq!(
                rewrite(&c, &http::Method::GET, path, &[]),
                Err(message.to_owned()),
                "{path}"
            );
        }
    }
}
