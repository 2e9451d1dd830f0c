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
    /// Automatic cross-origin (`aco`): CORS headers, JSON-P.
    pub aco: bool,
    /// How JSON-P requests are read (`jsonp_*`), with `aco`.
    pub jsonp: JsonpConfig,
    /// The client's headers also go to the origin under the prefix
    /// `eb9bf0f5-` (`orig_headers`), as Pushpin marks them.
    pub orig_headers: bool,
    /// Log level for this route's requests (`log_level`, Pushpin's 0-4).
    pub log_level: Option<u8>,
    /// Path prefix of SockJS endpoints (`sockjs=`).
    pub sockjs: Option<String>,
    /// The WebSocket path the origin sees for SockJS sessions
    /// (`sockjs_as_path=`; default: the prefix).
    pub sockjs_as_path: Option<String>,
    /// Origins, in failover order.
    pub targets: Vec<Target>,
}

/// JSON-P settings of a route (Pushpin's `jsonp_mode`, `jsonp_cb`,
/// `jsonp_body`, `jsonp_defcb`, `jsonp_defmethod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonpConfig {
    /// `extended` (default): the callback gets `{code, reason, headers,
    /// body}`; `basic`: the body.
    pub extended: bool,
    /// Query parameter naming the callback (default `callback`).
    pub callback_param: String,
    /// Query parameter carrying a JSON body, if any.
    pub body_param: Option<String>,
    /// Callback used when there is none but the body parameter is there.
    pub default_callback: Option<String>,
    /// Method when the request has no `_method` (default GET for
    /// extended, POST for basic).
    pub method: Option<http::Method>,
}

impl Default for JsonpConfig {
    fn default() -> JsonpConfig {
        JsonpConfig {
            extended: true,
            callback_param: "callback".into(),
            body_param: None,
            default_callback: None,
            method: None,
        }
    }
}

impl JsonpConfig {
    /// The method of a request without `_method`.
    pub fn default_method(&self) -> http::Method {
        self.method.clone().unwrap_or(if self.extended {
            http::Method::GET
        } else {
            http::Method::POST
        })
    }
}

/// Protocol filter of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Plain HTTP requests.
    Http,
    /// WebSocket requests.
    Ws,
}
