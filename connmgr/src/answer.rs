//! Answers connmgr writes itself: refusals (limits, shutdown) and errors
//! between it and the proxy, each a status and a short text saying what
//! is wrong.

use holdfast_runtime::body::HttpBody as ResponseBody;
use http::{HeaderValue, Response, StatusCode};

/// A locally generated answer with a short text body.
pub fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(format!("{text}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}
