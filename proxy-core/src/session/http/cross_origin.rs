//! An answer shaped for a browser on another origin (route `aco`, or
//! `auto_cross_origin`): CORS headers added, or, for a JSON-P request,
//! the whole answer wrapped as a call to its callback. Held answers are
//! left to the handler, which shapes what it sends.

use crate::error::ProxyError;
use crate::origin::body::OriginBody;
use holdfast_grip::answer::Answer;
use holdfast_grip::cross_origin::{apply_cors, jsonp_wrap};
use holdfast_grip::GripError;
use holdfast_protocol::handoff;
use holdfast_protocol::zhttp::Header;
use http_body_util::BodyExt;
use std::time::Duration;

/// How long a relayed body to wrap as JSON-P may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest relayed body wrapped as JSON-P (it is read whole first).
const JSONP_MAX_BODY: usize = 1_000_000;

/// An answer shaped for a browser on another origin (route `aco`): wrapped
/// as JSON-P when the request was one, else with CORS headers. Held
/// answers are left to the handler, which shapes what it sends.
pub(super) async fn cross_origin_answer(
    answer: Answer<OriginBody>,
    shape: &handoff::CrossOrigin,
    request: &[Header],
) -> Result<Answer<OriginBody>, ProxyError> {
    let (code, reason, mut headers, body) = match answer {
        Answer::Relay {
            code,
            reason,
            mut headers,
            body,
        } => {
            let Some(jsonp) = &shape.jsonp else {
                apply_cors(request, &mut headers);
                return Ok(Answer::Relay {
                    code,
                    reason,
                    headers,
                    body,
                });
            };
            let whole = http_body_util::Limited::new(body, JSONP_MAX_BODY);
            let body = tokio::time::timeout(BODY_TIMEOUT, whole.collect())
                .await
                .map_err(|_| GripError::Body("answer body took too long".into()))?
                .map_err(|e| {
                    GripError::Body(format!(
                        "answer body unreadable or over {JSONP_MAX_BODY} bytes, cannot be JSON-P encoded: {e}"
                    ))
                })?
                .to_bytes();
            let reason = reason.unwrap_or_default();
            let (headers, body) = jsonp_wrap(jsonp, code, &reason, &headers, &body);
            return Ok(Answer::Whole {
                code: 200,
                reason: Some("OK".into()),
                headers,
                body,
            });
        }
        Answer::Whole {
            code,
            reason,
            headers,
            body,
        } => (code, reason, headers, body),
        hold @ Answer::Hold { .. } => return Ok(hold),
    };
    match &shape.jsonp {
        Some(jsonp) => {
            let (headers, body) = jsonp_wrap(
                jsonp,
                code,
                reason.as_deref().unwrap_or(""),
                &headers,
                &body,
            );
            Ok(Answer::Whole {
                code: 200,
                reason: Some("OK".into()),
                headers,
                body,
            })
        }
        None => {
            apply_cors(request, &mut headers);
            Ok(Answer::Whole {
                code,
                reason,
                headers,
                body,
            })
        }
    }
}
