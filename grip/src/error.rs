//! What can go wrong with an origin's answer, as GRIP reads it. Whoever
//! asked the origin decides what the client gets (the proxy answers 502 or
//! 501, the handler ends a retry or a link).

use crate::instruct::InstructError;

/// An origin answer that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GripError {
    /// The origin's GRIP instructions are malformed.
    #[error("origin sent invalid GRIP instructions: {0}")]
    BadInstruct(InstructError),
    /// The origin switched protocols on a plain HTTP request.
    #[error("origin switched protocols (WebSocket), which this version cannot proxy yet")]
    UpgradeUnsupported,
    /// The origin's body could not be read (or was too large to keep).
    #[error("origin failed: {0}")]
    Body(String),
}

/// An error with its causes, `a: b: c`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
