//! Routes: Pushpin's routes file syntax, parsed into a table that picks the
//! route (and its origin targets) for each request.
//!
//! One rule per line: `<condition>[,prop[=value]...] <target>[,prop...] [<target>...]`.
//! `#` starts a comment; values may be double-quoted with backslash escapes.

mod parse;
mod table;

pub use parse::{parse_routes, RouteError};
pub use table::{RequestInfo, RouteTable, Target};

/// One rule of the routes file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    /// Line in the file (or position among `--route` lines), for messages.
    pub line: usize,
    /// Route id (`id=`).
    pub id: Option<String>,
    /// Host the rule applies to; `None` for `*` (any host).
    pub domain: Option<String>,
    /// Path prefix the request must start with (`path_beg=`).
    pub path_beg: Option<String>,
    /// Match only TLS (`ssl=yes`) or only plain (`ssl=no`) client requests.
    pub ssl: Option<bool>,
    /// Match only `http` or `ws` requests (`proto=`).
    pub proto: Option<Proto>,
    /// Issuer for `Grip-Sig` on this route (`sig_iss=`).
    pub sig_iss: Option<String>,
    /// Key for `Grip-Sig` on this route (`sig_key=`).
    pub sig_key: Option<String>,
    /// Channel prefix applied to subscriptions (`prefix=`).
    pub prefix: Option<String>,
    /// Rewrite of the Host header and URI host (`as_host=`).
    pub as_host: Option<String>,
    /// Characters removed from the start of the path (`path_rem=`).
    pub path_rem: usize,
    /// Replacement for the `path_beg` prefix (`replace_beg=`).
    pub replace_beg: Option<String>,
    /// Headers added to proxied requests (`header=Name:value`, repeatable).
    pub headers: Vec<(String, String)>,
    /// GRIP processing and signing off (`no_grip`).
    pub no_grip: bool,
    /// Verbose error bodies (`debug`).
    pub debug: bool,
    /// Answers go through the edge cache (`cache`).
    pub cache: bool,
    /// Pushpin's session feature (`session`): requests are told their
    /// client session's last ids, held responses may name a session.
    pub session: bool,
    /// Origins, in failover order.
    pub targets: Vec<Target>,
}

/// Protocol filter of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Plain HTTP requests.
    Http,
    /// WebSocket requests.
    Ws,
}
