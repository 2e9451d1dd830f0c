//! GRIP between Holdfast and an origin, for both processes that ask one:
//! the proxy (first requests) and the handler (retries, next and gone
//! links, purges). Processes meet only on the wire; this is the code they
//! share for speaking to origins.
//!
//! # Layout
//! - this file: recognising a GRIP answer ([`is_grip_response`]).
//! - [`headers`]: the `Grip-*` header value grammar.
//! - [`instruct`]: the instructions, from headers or an
//!   `application/grip-instruct` body.
//! - [`answer`]: what a client gets for an origin's answer, GRIP applied
//!   ([`answer::interpret`]); the hold handed to the handler.
//! - [`client`]: the pooled HTTP clients toward origins (verified and
//!   `insecure`).
//! - [`cross_origin`]: CORS headers and JSON-P wrapping (route `aco`), for
//!   relayed and held responses alike.
//! - [`sign`]: `Grip-Sig` (signing requests, verifying trusted clients).
//! - [`error`]: what can go wrong with an origin's answer; [`error_chain`].

pub mod answer;
pub mod client;
pub mod cross_origin;
pub mod error;
pub mod headers;
pub mod instruct;
pub mod sign;

pub use error::{error_chain, GripError};

use http::HeaderMap;

/// Content type of a GRIP instruction body.
pub const INSTRUCT_CONTENT_TYPE: &str = "application/grip-instruct";

/// Whether the body is an `application/grip-instruct` document.
pub fn is_instruct_body(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(INSTRUCT_CONTENT_TYPE))
        })
}

/// Whether the response carries GRIP instructions: any `Grip-*` header, or an
/// `application/grip-instruct` body (as Pushpin decides).
pub fn is_grip_response(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with("grip-"))
        || is_instruct_body(headers)
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
