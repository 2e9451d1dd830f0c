//! Answers for browsers on other origins (route option `aco`, Pushpin's
//! automatic cross-origin): CORS headers added to every response unless the
//! origin set them, and JSON-P (a `GET` with a callback parameter; the
//! request is rewritten from its query parameters and the response wrapped
//! in a call to the callback). Used by the proxy (relayed answers) and the
//! handler (held ones), so both shape responses alike.

use bytes::Bytes;
use holdfast_protocol::handoff::Jsonp;
use holdfast_protocol::zhttp::Header;

/// Response headers browsers may read without being told (CORS-safelisted).
const SIMPLE: [&str; 7] = [
    "cache-control",
    "content-language",
    "content-length",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
];

fn has(headers: &[Header], name: &str) -> bool {
    headers
        .iter()
        .any(|Header(n, _)| n.eq_ignore_ascii_case(name))
}

fn values<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |Header(n, _)| n.eq_ignore_ascii_case(name))
        .map(|Header(_, v)| &v[..])
}

fn add(headers: &mut Vec<Header>, name: &str, value: impl Into<Bytes>) {
    headers.push(Header(name.to_owned(), value.into()));
}

/// Adds the CORS headers the origin did not set: the methods and headers a
/// preflight asked for (or a default list), every non-simple response
/// header exposed, credentials allowed, the request's `Origin` (or `*`),
/// and a one-hour preflight cache.
pub fn apply_cors(request: &[Header], response: &mut Vec<Header>) {
    if !has(response, "access-control-allow-methods") {
        let asked = values(request, "access-control-request-method").find(|v| !v.is_empty());
        let methods = asked.map_or_else(
            || Bytes::from_static(b"OPTIONS, HEAD, GET, POST, PUT, DELETE"),
            Bytes::copy_from_slice,
        );
        add(response, "Access-Control-Allow-Methods", methods);
    }
    if !has(response, "access-control-allow-headers") {
        let asked: Vec<&[u8]> = values(request, "access-control-request-headers")
            .filter(|v| !v.is_empty())
            .collect();
        if !asked.is_empty() {
            add(
                response,
                "Access-Control-Allow-Headers",
                asked.join(&b", "[..]),
            );
        }
    }
    if !has(response, "access-control-expose-headers") {
        let mut exposed: Vec<&str> = Vec::new();
        for Header(name, _) in response.iter() {
            let lower = name.to_ascii_lowercase();
            let hidden = !SIMPLE.contains(&lower.as_str())
                && !lower.starts_with("access-control-")
                && !lower.starts_with("grip-");
            if hidden && !exposed.iter().any(|e| e.eq_ignore_ascii_case(name)) {
                exposed.push(name);
            }
        }
        if !exposed.is_empty() {
            let list = exposed.join(", ");
            add(response, "Access-Control-Expose-Headers", list);
        }
    }
    if !has(response, "access-control-allow-credentials") {
        add(response, "Access-Control-Allow-Credentials", "true");
    }
    if !has(response, "access-control-allow-origin") {
        let origin = values(request, "origin").find(|v| !v.is_empty());
        let origin = origin.map_or_else(|| Bytes::from_static(b"*"), Bytes::copy_from_slice);
        add(response, "Access-Control-Allow-Origin", origin);
    }
    if !has(response, "access-control-max-age") {
        add(response, "Access-Control-Max-Age", "3600");
    }
}

/// A response as a JSON-P call: always `200 OK`, `application/javascript`,
/// with the origin's `Cache-Control`. Basic mode passes the body (less a
/// final newline) as the argument; extended mode passes `{code, reason,
/// headers, body}`, the body as text (invalid UTF-8 replaced).
pub fn jsonp_wrap(
    jsonp: &Jsonp,
    code: u16,
    reason: &str,
    headers: &[Header],
    body: &[u8],
) -> (Vec<Header>, Bytes) {
    let argument = if jsonp.extended {
        let mut merged: Vec<(String, String)> = Vec::new();
        for Header(name, value) in headers {
            let value = String::from_utf8_lossy(value);
            match merged
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                Some((_, all)) => {
                    all.push_str(", ");
                    all.push_str(&value);
                }
                None => merged.push((name.clone(), value.into_owned())),
            }
        }
        let headers: serde_json::Map<String, serde_json::Value> = merged
            .into_iter()
            .map(|(n, v)| (n, serde_json::Value::String(v)))
            .collect();
        serde_json::json!({
            "code": code,
            "reason": reason,
            "headers": headers,
            "body": String::from_utf8_lossy(body),
        })
        .to_string()
        .into_bytes()
    } else {
        let trimmed = body
            .strip_suffix(b"\r\n")
            .or_else(|| body.strip_suffix(b"\n"))
            .unwrap_or(body);
        trimmed.to_vec()
    };
    let mut out = Vec::with_capacity(argument.len() + jsonp.callback.len() + 8);
    out.extend_from_slice(b"/**/");
    out.extend_from_slice(jsonp.callback.as_bytes());
    out.push(b'(');
    out.extend_from_slice(&argument);
    out.extend_from_slice(b");\n");
    let mut wrapped = vec![Header(
        "Content-Type".into(),
        Bytes::from_static(b"application/javascript"),
    )];
    wrapped.extend(
        headers
            .iter()
            .filter(|Header(n, _)| n.eq_ignore_ascii_case("cache-control"))
            .cloned(),
    );
    (wrapped, Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: &str, v: &str) -> Header {
        Header(n.into(), Bytes::copy_from_slice(v.as_bytes()))
    }

    fn get<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|Header(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|Header(_, v)| std::str::from_utf8(v).ok())
    }

    #[test]
    fn cors_for_a_preflight_and_a_plain_request() {
        let request = [
            h("Origin", "https://app.example"),
            h("Access-Control-Request-Method", "PUT"),
            h("Access-Control-Request-Headers", "X-A"),
            h("Access-Control-Request-Headers", "X-B"),
        ];
        let mut response = vec![
            h("Content-Type", "text/plain"),
            h("X-Id", "7"),
            h("Grip-X", "1"),
        ];
        apply_cors(&request, &mut response);
        assert_eq!(get(&response, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(
            get(&response, "access-control-allow-headers"),
            Some("X-A, X-B")
        );
        assert_eq!(
            get(&response, "access-control-expose-headers"),
            Some("X-Id")
        );
        assert_eq!(
            get(&response, "access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(
            get(&response, "access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(get(&response, "access-control-max-age"), Some("3600"));

        let mut plain = vec![h("Access-Control-Allow-Origin", "https://mine.example")];
        apply_cors(&[], &mut plain);
        assert_eq!(
            get(&plain, "access-control-allow-methods"),
            Some("OPTIONS, HEAD, GET, POST, PUT, DELETE")
        );
        assert_eq!(get(&plain, "access-control-allow-headers"), None);
        assert_eq!(
            get(&plain, "access-control-allow-origin"),
            Some("https://mine.example"),
            "the origin's own value stays"
        );
    }

    #[test]
    fn jsonp_basic_and_extended() {
        let basic = Jsonp {
            callback: "cb".into(),
            extended: false,
        };
        let headers = [h("Cache-Control", "no-cache"), h("X-A", "1"), h("x-a", "2")];
        let (wrapped, body) = jsonp_wrap(&basic, 404, "Not Found", &headers, b"{\"a\":1}\n");
        assert_eq!(&body[..], b"/**/cb({\"a\":1});\n");
        assert_eq!(
            get(&wrapped, "content-type"),
            Some("application/javascript")
        );
        assert_eq!(get(&wrapped, "cache-control"), Some("no-cache"));
        assert_eq!(get(&wrapped, "x-a"), None);

        let extended = Jsonp {
            callback: "cb".into(),
            extended: true,
        };
        let (_, body) = jsonp_wrap(&extended, 404, "Not Found", &headers, b"a\"b\n");
        let text = std::str::from_utf8(&body).unwrap();
        let json = text
            .strip_prefix("/**/cb(")
            .and_then(|t| t.strip_suffix(");\n"))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["code"], 404);
        assert_eq!(value["reason"], "Not Found");
        assert_eq!(value["headers"]["X-A"], "1, 2");
        assert_eq!(value["body"], "a\"b\n");
    }
}
