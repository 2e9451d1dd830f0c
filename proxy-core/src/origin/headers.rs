//! The request the origin sees: which client headers pass, which the proxy
//! adds (`Grip-Sig`, `Grip-Feature`, `X-Forwarded-*`, route headers), and the
//! path and Host rewrites of the route. Pure functions, tested on tables.

use crate::routes::{Route, Target};
use bytes::Bytes;
use holdfast_protocol::inspect::Inspected;
use holdfast_protocol::zhttp::Header;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The GRIP features this proxy advertises (Pushpin 1.36's list).
pub const GRIP_FEATURES: &str =
    "status, session, link:next, link:gone, filter:skip-self, filter:skip-users, filter:require-sub, filter:build-id, filter:var-subst";

/// Request headers that describe one hop and are never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Headers a client's `Connection` list may not remove: the request would
/// change meaning (another site, a different body framing).
const NEVER_HOP_BY_HOP: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// An `x_forwarded_for` rule: `truncate:N` keeps at most N existing entries
/// (0 drops the header), `append` adds the client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XffRule {
    /// Existing entries kept, if limited.
    pub truncate: Option<usize>,
    /// Append the client's address.
    pub append: bool,
}

impl std::str::FromStr for XffRule {
    type Err = String;
    fn from_str(s: &str) -> Result<XffRule, String> {
        let mut rule = XffRule::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "append" {
                rule.append = true;
            } else if let Some(n) = part.strip_prefix("truncate:") {
                rule.truncate = Some(
                    n.parse()
                        .map_err(|_| format!("x_forwarded_for: bad number in {part:?}"))?,
                );
            } else {
                return Err(format!(
                    "x_forwarded_for: unknown rule {part:?} (expected truncate:N or append)"
                ));
            }
        }
        Ok(rule)
    }
}

/// How X-Forwarded-Proto is set on TLS requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetProto {
    /// Not set.
    Off,
    /// `X-Forwarded-Proto` only.
    ProtoOnly,
    /// Also the legacy `X-Forwarded-Protocol`.
    Both,
}

impl SetProto {
    /// Pushpin's `set_x_forwarded_protocol` values.
    pub fn from_setting(s: &str) -> SetProto {
        match s {
            "proto-only" => SetProto::ProtoOnly,
            "true" => SetProto::Both,
            _ => SetProto::Off,
        }
    }
}

/// Proxy-wide forwarding settings.
#[derive(Debug, Clone)]
pub struct ForwardRules {
    /// X-Forwarded-For rule for untrusted clients.
    pub xff: XffRule,
    /// X-Forwarded-For rule for trusted clients.
    pub xff_trusted: XffRule,
    /// X-Forwarded-Proto policy.
    pub set_proto: SetProto,
    /// Whether a client's X-Forwarded-Proto is believed.
    pub accept_proto: bool,
    /// Headers (lower case) `orig_headers` passes only already marked.
    pub orig_need_mark: Vec<String>,
}

/// The prefix marking a client's original headers (Pushpin's).
pub const ORIG_MARK: &str = "eb9bf0f5-";

/// What decides the forwarded headers of one request.
pub struct Forward<'a> {
    /// The client's headers.
    pub headers: &'a [Header],
    /// The client's address.
    pub peer: Option<&'a str>,
    /// The client's connection is TLS (or says so, when believed).
    pub tls: bool,
    /// The client proved it is an upstream GRIP proxy.
    pub trusted: bool,
    /// The route.
    pub route: &'a Route,
    /// The origin chosen.
    pub target: &'a Target,
    /// A fresh `Grip-Sig`, when signing applies.
    pub signature: Option<String>,
    /// The client session (`session` routes): `Grip-Session-Id`, `Grip-Last`.
    pub session: Option<&'a Inspected>,
}

/// Whether the request came over TLS, believing X-Forwarded-Proto if allowed.
pub fn is_tls(scheme_tls: bool, headers: &[Header], rules: &ForwardRules) -> bool {
    scheme_tls
        || (rules.accept_proto
            && headers.iter().any(|Header(n, v)| {
                (n.eq_ignore_ascii_case("x-forwarded-proto")
                    || n.eq_ignore_ascii_case("x-forwarded-protocol"))
                    && v.eq_ignore_ascii_case(b"https")
            }))
}

/// Builds the origin request's headers.
pub fn origin_headers(f: &Forward<'_>, rules: &ForwardRules) -> HeaderMap {
    let grip = !f.route.no_grip;
    let named_by_connection: Vec<String> = f
        .headers
        .iter()
        .filter(|Header(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|Header(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !NEVER_HOP_BY_HOP.contains(&s.as_str()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut map = HeaderMap::with_capacity(f.headers.len() + 4);
    let mut xff: Vec<String> = Vec::new();
    let originals = marked_originals(f, rules);
    for Header(name, value) in f.headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(ORIG_MARK) {
            continue;
        }
        let dropped = HOP_BY_HOP.contains(&lower.as_str())
            || named_by_connection.contains(&lower)
            || (lower.starts_with("grip-") && !f.trusted)
            || (grip && lower == "accept-encoding")
            || ((lower == "x-forwarded-proto" || lower == "x-forwarded-protocol")
                && !rules.accept_proto);
        if dropped {
            continue;
        }
        if lower == "x-forwarded-for" {
            xff.extend(
                String::from_utf8_lossy(value)
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
            );
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value.clone()),
        ) {
            map.append(name, value);
        }
    }
    for (name, value) in originals {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value),
        ) {
            map.append(name, value);
        }
    }
    let host = f
        .target
        .host_header
        .as_deref()
        .or(f.route.as_host.as_deref());
    if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        map.insert(http::header::HOST, host);
    }
    for (name, value) in &f.route.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.insert(name, value);
        }
    }
    forwarded_for_and_proto(&mut map, f, rules, xff);
    if grip && !f.trusted {
        map.insert(
            HeaderName::from_static("grip-feature"),
            HeaderValue::from_static(GRIP_FEATURES),
        );
        if let Some(sig) = f
            .signature
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            map.insert(HeaderName::from_static("grip-sig"), sig);
        }
    }
    if let (true, Some(session)) = (grip, f.session) {
        session_headers(&mut map, session, f.route.prefix.as_deref().unwrap_or(""));
    }
    map
}

/// `orig_headers`: every client header again under the mark, as sent (a
/// trusted client marked them already); otherwise marked ones go.
fn marked_originals(f: &Forward<'_>, rules: &ForwardRules) -> Vec<(String, Bytes)> {
    let mut originals = Vec::new();
    let copied = if f.route.orig_headers { f.headers } else { &[] };
    for Header(name, value) in copied {
        let marked = name.len() >= ORIG_MARK.len()
            && name[..ORIG_MARK.len()].eq_ignore_ascii_case(ORIG_MARK);
        if f.trusted && !marked {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if marked {
            originals.push((name.clone(), value.clone()));
        } else if !rules.orig_need_mark.contains(&lower) {
            originals.push((format!("{ORIG_MARK}{name}"), value.clone()));
        }
    }
    originals
}

/// `X-Forwarded-For` (the client's list, cut and appended to as the rule
/// for this client says) and `X-Forwarded-Proto` for TLS clients.
fn forwarded_for_and_proto(
    map: &mut HeaderMap,
    f: &Forward<'_>,
    rules: &ForwardRules,
    mut xff: Vec<String>,
) {
    let rule = if f.trusted {
        rules.xff_trusted
    } else {
        rules.xff
    };
    if let Some(n) = rule.truncate {
        xff.truncate(n);
    }
    if rule.append {
        if let Some(peer) = f.peer {
            xff.push(peer.to_owned());
        }
    }
    if !xff.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&xff.join(", ")) {
            map.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
    if f.tls && rules.set_proto != SetProto::Off {
        map.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("https"),
        );
        if rules.set_proto == SetProto::Both {
            map.insert(
                HeaderName::from_static("x-forwarded-protocol"),
                HeaderValue::from_static("https"),
            );
        }
    }
}

/// `Grip-Session-Id` and one `Grip-Last` per channel the session was sent
/// something on, named as the origin knows them (without the route prefix).
fn session_headers(map: &mut HeaderMap, session: &Inspected, prefix: &str) {
    let Some(sid) = session.sid.as_deref() else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(sid) {
        map.insert(HeaderName::from_static("grip-session-id"), value);
    }
    map.remove("grip-last");
    for (channel, id) in &session.last_ids {
        let channel = channel.strip_prefix(prefix).unwrap_or(channel);
        // Written as Pushpin writes it (and as the handler's retries do).
        let text = format!("{channel}; last-id={id}");
        if let Ok(value) = HeaderValue::from_str(&text) {
            map.append(HeaderName::from_static("grip-last"), value);
        }
    }
}

/// The path (with query) the origin sees, after `path_rem` and `replace_beg`.
pub fn rewrite_path(path: &str, route: &Route) -> String {
    let mut path = path.to_owned();
    if let (Some(beg), Some(replacement)) = (&route.path_beg, &route.replace_beg) {
        if let Some(rest) = path.strip_prefix(beg.as_str()) {
            path = format!("{replacement}{rest}");
        }
    }
    if route.path_rem > 0 {
        let cut = path
            .char_indices()
            .nth(route.path_rem)
            .map_or(path.len(), |(i, _)| i);
        path = path[cut..].to_owned();
    }
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn h(n: &str, v: &str) -> Header {
        Header(n.to_owned(), Bytes::from(v.to_owned()))
    }

    fn rules() -> ForwardRules {
        ForwardRules {
            orig_need_mark: vec!["cookie".into()],
            xff: "append".parse().unwrap(),
            xff_trusted: XffRule::default(),
            set_proto: SetProto::ProtoOnly,
            accept_proto: false,
        }
    }

    fn forward<'a>(headers: &'a [Header], route: &'a Route, target: &'a Target) -> Forward<'a> {
        Forward {
            headers,
            peer: Some("10.1.2.3"),
            tls: false,
            trusted: false,
            route,
            target,
            signature: Some("sig.token.here".into()),
            session: None,
        }
    }

    #[test]
    fn session_headers_replace_the_clients() {
        let headers = [
            h("Grip-Session-Id", "forged"),
            h("Grip-Last", "ch; last-id=1"),
        ];
        let route = Route {
            prefix: Some("app-".into()),
            ..Route::default()
        };
        let target = Target::default();
        let session = Inspected {
            sid: Some("abc".into()),
            last_ids: vec![
                ("app-news".into(), "7".into()),
                ("other".into(), "x".into()),
            ],
        };
        let mut f = forward(&headers, &route, &target);
        f.session = Some(&session);
        let map = origin_headers(&f, &rules());
        assert_eq!(map.get("grip-session-id").unwrap(), "abc");
        let last: Vec<_> = map.get_all("grip-last").iter().collect();
        assert_eq!(last, ["news; last-id=7", "other; last-id=x"]);
        // A session without an id adds nothing; the client's headers stay gone.
        let none = Inspected::default();
        f.session = Some(&none);
        let map = origin_headers(&f, &rules());
        assert!(map.get("grip-session-id").is_none() && map.get("grip-last").is_none());
    }

    #[test]
    fn strips_hop_and_grip_headers_and_signs() {
        let headers = [
            h("Host", "example.com"),
            h("Connection", "keep-alive, X-Custom-Hop"),
            h("X-Custom-Hop", "1"),
            h("Transfer-Encoding", "chunked"),
            h("Grip-Sig", "forged"),
            h("Grip-Last", "ch; last-id=1"),
            h("Accept-Encoding", "gzip"),
            h("X-Forwarded-For", "1.1.1.1"),
            h("X-Forwarded-Proto", "https"),
            h("Cookie", "a=b"),
        ];
        let (route, target) = (Route::default(), Target::default());
        let map = origin_headers(&forward(&headers, &route, &target), &rules());
        assert_eq!(map.get("host").unwrap(), "example.com");
        assert_eq!(map.get("cookie").unwrap(), "a=b");
        for gone in [
            "connection",
            "x-custom-hop",
            "transfer-encoding",
            "grip-last",
            "accept-encoding",
            "x-forwarded-proto",
        ] {
            assert!(map.get(gone).is_none(), "{gone}");
        }
        assert_eq!(map.get("grip-sig").unwrap(), "sig.token.here");
        assert_eq!(map.get("grip-feature").unwrap(), GRIP_FEATURES);
        assert_eq!(map.get("x-forwarded-for").unwrap(), "1.1.1.1, 10.1.2.3");
    }

    #[test]
    fn orig_headers_are_passed_again_under_the_mark() {
        let headers = [
            h("Host", "example.com"),
            h("Cookie", "a=b"),
            h("X-Trace", "1"),
            h("eb9bf0f5-Cookie", "forged"),
        ];
        let (mut route, target) = (Route::default(), Target::default());
        let map = origin_headers(&forward(&headers, &route, &target), &rules());
        assert!(
            map.get("eb9bf0f5-cookie").is_none(),
            "without orig_headers, marked headers go"
        );
        route.orig_headers = true;
        let map = origin_headers(&forward(&headers, &route, &target), &rules());
        assert_eq!(map.get("eb9bf0f5-host").unwrap(), "example.com");
        assert_eq!(map.get("eb9bf0f5-x-trace").unwrap(), "1");
        // Cookie needs a mark (orig_headers_need_mark): only the client's
        // own marked one passes.
        let cookies: Vec<_> = map.get_all("eb9bf0f5-cookie").iter().collect();
        assert_eq!(cookies, ["forged"]);
        assert_eq!(map.get("cookie").unwrap(), "a=b");
    }

    #[test]
    fn connection_list_cannot_remove_host_or_framing() {
        let headers = [
            h("Host", "example.com"),
            h("Connection", "Host, Content-Length, X-Hop"),
            h("Content-Length", "5"),
            h("X-Hop", "1"),
        ];
        let (route, target) = (Route::default(), Target::default());
        let map = origin_headers(&forward(&headers, &route, &target), &rules());
        assert_eq!(map.get("host").unwrap(), "example.com");
        assert_eq!(map.get("content-length").unwrap(), "5");
        assert!(map.get("x-hop").is_none());
    }

    #[test]
    fn trusted_clients_keep_grip_headers_and_are_not_signed() {
        let headers = [h("Grip-Sig", "upstream"), h("Grip-Last", "ch; last-id=1")];
        let (route, target) = (Route::default(), Target::default());
        let mut f = forward(&headers, &route, &target);
        f.trusted = true;
        let map = origin_headers(&f, &rules());
        assert_eq!(map.get("grip-sig").unwrap(), "upstream");
        assert!(map.get("grip-last").is_some());
        assert!(map.get("grip-feature").is_none());
        assert!(map.get("x-forwarded-for").is_none());
    }

    #[test]
    fn no_grip_routes_pass_accept_encoding_and_are_not_signed() {
        let headers = [h("Accept-Encoding", "gzip"), h("Grip-Sig", "forged")];
        let route = Route {
            no_grip: true,
            ..Route::default()
        };
        let target = Target::default();
        let map = origin_headers(&forward(&headers, &route, &target), &rules());
        assert_eq!(map.get("accept-encoding").unwrap(), "gzip");
        assert!(map.get("grip-sig").is_none());
        assert!(map.get("grip-feature").is_none());
    }

    #[test]
    fn host_rewrites_and_route_headers() {
        let headers = [h("Host", "client.test")];
        let route = Route {
            as_host: Some("as.test".into()),
            headers: vec![("X-Route".into(), "yes".into())],
            ..Route::default()
        };
        let target = Target::default();
        let map = origin_headers(&forward(&headers, &route, &target), &rules());
        assert_eq!(map.get("host").unwrap(), "as.test");
        assert_eq!(map.get("x-route").unwrap(), "yes");
        let target = Target {
            host_header: Some("target.test".into()),
            ..Target::default()
        };
        let map = origin_headers(&forward(&headers, &route, &target), &rules());
        assert_eq!(map.get("host").unwrap(), "target.test");
    }

    #[test]
    fn forwarded_for_and_proto_rules() {
        let headers = [h("X-Forwarded-For", "1.1.1.1, 2.2.2.2")];
        let (route, target) = (Route::default(), Target::default());
        let mut r = rules();
        r.xff = "truncate:1,append".parse().unwrap();
        let mut f = forward(&headers, &route, &target);
        f.tls = true;
        let map = origin_headers(&f, &r);
        assert_eq!(map.get("x-forwarded-for").unwrap(), "1.1.1.1, 10.1.2.3");
        assert_eq!(map.get("x-forwarded-proto").unwrap(), "https");
        r.xff = "truncate:0".parse().unwrap();
        assert!(origin_headers(&f, &r).get("x-forwarded-for").is_none());
        assert!("truncate:x".parse::<XffRule>().is_err());
        assert!("prepend".parse::<XffRule>().is_err());
        assert!(is_tls(
            false,
            &[h("X-Forwarded-Proto", "https")],
            &ForwardRules {
                orig_need_mark: Vec::new(),
                accept_proto: true,
                ..rules()
            }
        ));
        assert!(!is_tls(false, &[h("X-Forwarded-Proto", "https")], &rules()));
    }

    #[test]
    fn path_rewrites() {
        let route = Route {
            path_beg: Some("/api".into()),
            replace_beg: Some("/v2".into()),
            ..Route::default()
        };
        assert_eq!(rewrite_path("/api/items?x=1", &route), "/v2/items?x=1");
        assert_eq!(rewrite_path("/other", &route), "/other");
        let route = Route {
            path_rem: 4,
            ..Route::default()
        };
        assert_eq!(rewrite_path("/api/items", &route), "/items");
        assert_eq!(rewrite_path("/ap", &route), "/");
    }
}
