//! Route selection: exact-domain rules first, then wildcard rules; among the
//! rules whose conditions match, prefer an explicit `proto`, then the longest
//! `path_beg`, then an explicit `ssl`; file order breaks ties (as Pushpin).

use super::{Proto, Route};

/// One origin a route forwards to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    /// Host name or address to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// Connect with TLS (`ssl`).
    pub ssl: bool,
    /// Skip certificate checks (`insecure`).
    pub insecure: bool,
    /// Host header to send (`host=`).
    pub host_header: Option<String>,
    /// WebSocket-over-HTTP gateway (`over_http`).
    pub over_http: bool,
    /// One event per WebSocket-over-HTTP request (`one_event`).
    pub one_event: bool,
    /// Requests from this target's sessions are not trusted (`untrusted`).
    pub untrusted: bool,
    /// Implicit subscriptions (`sub=`, repeatable).
    pub subs: Vec<String>,
}

/// The parsed routes, ready for lookups.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// What a request offers to match on.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// Host without port, lower case.
    pub host: &'a str,
    /// Path (with query).
    pub path: &'a str,
    /// The client connection is TLS.
    pub ssl: bool,
    /// HTTP or WebSocket.
    pub proto: Proto,
}

impl RouteTable {
    /// A table over `routes` in file order.
    pub fn new(routes: Vec<Route>) -> RouteTable {
        RouteTable { routes }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The rule for a request, if any.
    pub fn find(&self, req: RequestInfo<'_>) -> Option<&Route> {
        let matches = |r: &&Route| {
            r.path_beg
                .as_deref()
                .is_none_or(|p| req.path.starts_with(p))
                && r.ssl.is_none_or(|s| s == req.ssl)
                && r.proto.is_none_or(|p| p == req.proto)
                && !r.targets.is_empty()
        };
        let exact = self
            .routes
            .iter()
            .filter(|r| {
                r.domain
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(req.host))
            })
            .filter(matches);
        best(exact).or_else(|| {
            best(
                self.routes
                    .iter()
                    .filter(|r| r.domain.is_none())
                    .filter(matches),
            )
        })
    }

    /// The rule with id `id` (for `Pushpin-Route`).
    pub fn by_id(&self, id: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.id.as_deref() == Some(id))
    }
}

fn best<'a>(candidates: impl Iterator<Item = &'a Route>) -> Option<&'a Route> {
    let rank = |r: &Route| {
        (
            r.proto.is_some(),
            r.path_beg.as_ref().map_or(0, String::len),
            r.ssl.is_some(),
        )
    };
    let mut chosen: Option<&Route> = None;
    for r in candidates {
        if chosen.is_none_or(|c| rank(r) > rank(c)) {
            chosen = Some(r);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::parse_routes;

    fn info<'a>(host: &'a str, path: &'a str) -> RequestInfo<'a> {
        RequestInfo {
            host,
            path,
            ssl: false,
            proto: Proto::Http,
        }
    }

    fn target_of(table: &RouteTable, req: RequestInfo<'_>) -> Option<u16> {
        table.find(req).map(|r| r.targets[0].port)
    }

    #[test]
    fn exact_domain_beats_wildcard() {
        let table =
            RouteTable::new(parse_routes("* 127.0.0.1:1\nexample.com 127.0.0.1:2\n").unwrap());
        assert_eq!(target_of(&table, info("example.com", "/")), Some(2));
        assert_eq!(target_of(&table, info("other.com", "/")), Some(1));
    }

    #[test]
    fn longest_path_then_proto_then_ssl() {
        let text = "*,path_beg=/a 127.0.0.1:1\n*,path_beg=/a/b 127.0.0.1:2\n*,ssl=yes 127.0.0.1:3\n*,proto=ws 127.0.0.1:4\n* 127.0.0.1:5";
        let table = RouteTable::new(parse_routes(text).unwrap());
        assert_eq!(target_of(&table, info("h", "/a/b/c")), Some(2));
        assert_eq!(target_of(&table, info("h", "/a/x")), Some(1));
        assert_eq!(target_of(&table, info("h", "/x")), Some(5));
        let tls = RequestInfo {
            ssl: true,
            ..info("h", "/x")
        };
        assert_eq!(target_of(&table, tls), Some(3));
        let ws = RequestInfo {
            proto: Proto::Ws,
            ..info("h", "/a/b")
        };
        assert_eq!(target_of(&table, ws), Some(4));
    }

    #[test]
    fn no_match_without_wildcard() {
        let table = RouteTable::new(parse_routes("example.com 127.0.0.1:2").unwrap());
        assert!(table.find(info("other.com", "/")).is_none());
    }

    #[test]
    fn file_order_breaks_ties() {
        let table = RouteTable::new(parse_routes("* 127.0.0.1:1\n* 127.0.0.1:2").unwrap());
        assert_eq!(target_of(&table, info("h", "/")), Some(1));
    }
}
