//! Recognising GRIP in an origin's response. Acting on the instructions is
//! the handler's job (held sessions); until it can, such responses are
//! refused with 501 rather than leaking `Grip-*` headers to clients.

use http::HeaderMap;

/// Content type of a GRIP instruction body.
pub const INSTRUCT_CONTENT_TYPE: &str = "application/grip-instruct";

/// Whether the response carries GRIP instructions: any `Grip-*` header, or an
/// `application/grip-instruct` body (as Pushpin decides).
pub fn is_grip_response(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with("grip-"))
        || headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(INSTRUCT_CONTENT_TYPE))
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn detects_headers_and_instruct_bodies() {
        let mut h = HeaderMap::new();
        assert!(!is_grip_response(&h));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        assert!(!is_grip_response(&h));
        h.insert("grip-hold", HeaderValue::from_static("stream"));
        assert!(is_grip_response(&h));
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/grip-instruct; charset=utf-8"),
        );
        assert!(is_grip_response(&h));
    }
}
