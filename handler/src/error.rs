//! The handler's errors, each tagged with whose fault it is ([`Fault`]):
//! that says what to fix (a setting, a publisher's item, the origin, the
//! bus, a cache in front) and how loudly to say it. Start-up settings
//! ([`ConfigError`]), items from ZeroMQ SUB or the bus ([`ItemError`]),
//! publish authentication ([`AuthError`]), requests to the origin for a
//! session ([`OriginError`]) and purges ([`PurgeError`]). The bus's own
//! errors are [`crate::bus::BusError`]. Their text is what clients and logs
//! show; tests match on variants.

use holdfast_grip::GripError;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operator's settings.
    Config,
    /// What a publisher sent.
    Publisher,
    /// The origin (unreachable, or an unusable answer).
    Origin,
    /// The bus (NATS).
    Bus,
    /// A cache in front (Varnish, Fastly) refusing a purge.
    Cache,
    /// This process (a socket gone, an encoding that cannot fail).
    Internal,
}

/// A start-up setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `bus_url` entry that is not a NATS server URL.
    #[error("bus_url: {url:?} is not a NATS server URL: {reason}")]
    BusUrl {
        /// The entry.
        url: String,
        /// Why.
        reason: String,
    },
    /// `bus_url` without a server.
    #[error("bus_url names no server")]
    NoBusServer,
    /// A publish key `base64:` that is not base64.
    #[error("publish key: invalid base64 after \"base64:\"")]
    PublishKey,
    /// A `fastly:` purge target whose service id is not letters and digits.
    #[error("{target:?}: a Fastly service id is letters and digits")]
    FastlyServiceId {
        /// The target as given.
        target: String,
    },
    /// A purge target that is none of the kinds.
    #[error("{target:?}: expected self, fastly:<service id> or an http:// URL")]
    PurgeTarget {
        /// The target as given.
        target: String,
    },
}

impl ConfigError {
    /// Whose fault.
    pub fn fault(&self) -> Fault {
        Fault::Config
    }
}

/// An item from the ZeroMQ SUB input or the bus that cannot be delivered.
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    /// A SUB message is two frames.
    #[error("expected 2 frames (channel, item), got {got}")]
    Frames {
        /// Frames received.
        got: usize,
    },
    /// A SUB channel frame must be UTF-8.
    #[error("channel frame is not UTF-8")]
    ChannelNotUtf8,
    /// A bus subject outside the channel scheme.
    #[error("subject {subject:?} names no channel")]
    NoChannel {
        /// The subject.
        subject: String,
    },
    /// The item itself.
    #[error(transparent)]
    Item(#[from] holdfast_protocol::publish::PublishError),
}

impl ItemError {
    /// Whose fault.
    pub fn fault(&self) -> Fault {
        Fault::Publisher
    }
}

/// Why a publish request is not allowed (the client gets 401 with this).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization` header.
    #[error("a valid Basic credential or Bearer token is required")]
    Missing,
    /// A Basic credential other than the one configured.
    #[error("the Basic credential is not the one configured")]
    WrongBasic,
    /// A Bearer token that does not verify.
    #[error("the Bearer token is not valid: {0}")]
    BadToken(jsonwebtoken::errors::Error),
    /// A token past its `exp`.
    #[error("the Bearer token expired {ago:.0} s ago")]
    Expired {
        /// Seconds since.
        ago: f64,
    },
    /// A token before its `nbf`.
    #[error("the Bearer token is not valid for another {remaining:.0} s (nbf)")]
    NotYet {
        /// Seconds until.
        remaining: f64,
    },
    /// A time claim that is not a NumericDate.
    #[error("the token's \"{claim}\" must be a number of seconds since 1970")]
    BadTime {
        /// `exp` or `nbf`.
        claim: &'static str,
    },
    /// A scheme other than those configured.
    #[error("{scheme} credentials are not accepted here")]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
}

impl AuthError {
    /// Whose fault.
    pub fn fault(&self) -> Fault {
        Fault::Publisher
    }
}

/// Why a request to the origin for a session (a long-poll asked again, a
/// next link) has no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// No answer in time.
    #[error("no answer within {secs}s")]
    Timeout {
        /// The limit.
        secs: u64,
    },
    /// A URI the client cannot use.
    #[error("unusable URI {uri:?}")]
    BadUri {
        /// The URI.
        uri: String,
    },
    /// Connecting or talking to it failed.
    #[error("{0}")]
    Unreachable(String),
    /// Its answer's GRIP instructions or body.
    #[error(transparent)]
    Grip(#[from] GripError),
    /// A page's body past the limit or unreadable.
    #[error("body unreadable or over {limit} bytes: {reason}")]
    Body {
        /// The limit.
        limit: usize,
        /// Why.
        reason: String,
    },
}

impl OriginError {
    /// Whose fault.
    pub fn fault(&self) -> Fault {
        Fault::Origin
    }
}

/// Why a purge did not go through.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PurgeError {
    /// A Fastly target without an API token.
    #[error("no Fastly API token configured")]
    NoFastlyToken,
    /// An item's URL to purge that is not http(s).
    #[error("{url}: not an http(s) URL")]
    NotHttpUrl {
        /// The URL.
        url: String,
    },
    /// A purge URL the client cannot use.
    #[error("unusable URL {url}")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// A key or token that cannot be a header value.
    #[error("{name}: {reason}")]
    BadHeader {
        /// The header.
        name: String,
        /// Why.
        reason: String,
    },
    /// The purge message for the proxies could not be encoded.
    #[error("{0}")]
    Encode(String),
    /// The socket toward the proxies is gone.
    #[error("proxy socket closed")]
    ProxiesGone,
    /// The cache did not answer in time.
    #[error("{method} {url}: no answer")]
    NoAnswer {
        /// `PURGE` or `POST`.
        method: &'static str,
        /// The request's URL.
        url: String,
    },
    /// The cache could not be reached.
    #[error("{method} {url}: {reason}")]
    Transport {
        /// `PURGE` or `POST`.
        method: &'static str,
        /// The request's URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The cache answered with an error status.
    #[error("{method} {url}: {status}")]
    Status {
        /// `PURGE` or `POST`.
        method: &'static str,
        /// The request's URL.
        url: String,
        /// Its answer.
        status: http::StatusCode,
    },
}

impl PurgeError {
    /// Whose fault.
    pub fn fault(&self) -> Fault {
        match self {
            PurgeError::NoFastlyToken => Fault::Config,
            PurgeError::NotHttpUrl { .. }
            | PurgeError::BadUrl { .. }
            | PurgeError::BadHeader { .. } => Fault::Publisher,
            PurgeError::Encode(_) | PurgeError::ProxiesGone => Fault::Internal,
            PurgeError::NoAnswer { .. }
            | PurgeError::Transport { .. }
            | PurgeError::Status { .. } => Fault::Cache,
        }
    }
}
