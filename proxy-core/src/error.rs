//! Errors of a proxied request, tagged with whose fault they are: that
//! decides the status the client gets and how loudly it is logged.

use holdfast_grip::GripError;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something unusable.
    Client,
    /// The origin failed or is unreachable.
    Origin,
    /// Something this proxy cannot do (yet) or a bug.
    Internal,
}

/// A request that cannot be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches the request's host and path.
    #[error("no route for {host}{path}")]
    NoRoute {
        /// Host asked for.
        host: String,
        /// Path asked for.
        path: String,
    },
    /// The first packet lacks a method or URI, or they are invalid.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Every target failed.
    #[error("origin {target} failed: {reason}")]
    Origin {
        /// The last target tried.
        target: String,
        /// Why.
        reason: String,
    },
    /// The origin asked for a hold, which needs the handler.
    #[error("origin asked to hold the connection, which this version cannot do yet")]
    HoldUnsupported,
    /// The origin's answer cannot be used (malformed GRIP instructions, an
    /// unreadable body, a switch of protocols).
    #[error(transparent)]
    Grip(#[from] GripError),
}

impl ProxyError {
    /// The origin's body could not be read.
    pub fn origin_body(reason: &str) -> ProxyError {
        ProxyError::Origin {
            target: "origin".into(),
            reason: reason.to_owned(),
        }
    }

    /// Whose fault.
    pub fn source(&self) -> ErrorSource {
        match self {
            ProxyError::NoRoute { .. } | ProxyError::BadRequest(_) => ErrorSource::Client,
            ProxyError::Origin { .. }
            | ProxyError::Grip(GripError::BadInstruct(_) | GripError::Body(_)) => {
                ErrorSource::Origin
            }
            ProxyError::HoldUnsupported | ProxyError::Grip(GripError::UpgradeUnsupported) => {
                ErrorSource::Internal
            }
        }
    }

    /// Status and short body for the client; `debug` adds the detail.
    pub fn response(&self, debug: bool) -> (u16, String) {
        let (code, text) = match self {
            // The client's own mistake: say what it is.
            ProxyError::BadRequest(reason) => return (400, format!("Bad request: {reason}\n")),
            ProxyError::NoRoute { .. } => (502, "No route for this request."),
            ProxyError::Origin { .. }
            | ProxyError::Grip(GripError::BadInstruct(_) | GripError::Body(_)) => {
                (502, "Error while proxying to origin.")
            }
            ProxyError::HoldUnsupported => (
                501,
                "The origin answered with GRIP instructions to hold the connection; holding connections is not supported by this Holdfast version yet.",
            ),
            ProxyError::Grip(GripError::UpgradeUnsupported) => (501, "WebSocket proxying is not supported by this Holdfast version yet."),
        };
        if debug {
            (code, format!("{text}\n{self}\n"))
        } else {
            (code, format!("{text}\n"))
        }
    }
}
