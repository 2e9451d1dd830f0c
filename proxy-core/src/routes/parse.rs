//! Routes file parser. Pure: text in, routes or a precise error out.

use super::{Proto, Route, Target};

/// Why a routes file (or `--route` line) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    /// A double quote was opened and never closed.
    #[error("line {line}: unterminated quote")]
    UnterminatedQuote {
        /// Line number, from 1.
        line: usize,
    },
    /// A rule with a condition but no target.
    #[error("line {line}: rule has no target")]
    MissingTarget {
        /// Line number, from 1.
        line: usize,
    },
    /// A target that is not `host:port` or `[ipv6]:port`.
    #[error("line {line}: bad target {target:?}: {reason}")]
    BadTarget {
        /// Line number, from 1.
        line: usize,
        /// The target as written.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A property with a value it cannot take.
    #[error("line {line}: bad value {value:?} for {prop}: {reason}")]
    BadValue {
        /// Line number, from 1.
        line: usize,
        /// The property name.
        prop: String,
        /// The value as written.
        value: String,
        /// What it should be.
        reason: &'static str,
    },
}

/// Parses a whole routes file.
pub fn parse_routes(text: &str) -> Result<Vec<Route>, RouteError> {
    let mut routes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(route) = parse_line(line, index + 1)? {
            routes.push(route);
        }
    }
    Ok(routes)
}

/// A property: `name` or `name=value`.
type Prop = (String, Option<String>);

/// Splits a line into whitespace-separated tokens of comma-separated props.
fn tokenize(line: &str, number: usize) -> Result<Vec<Vec<Prop>>, RouteError> {
    let mut tokens: Vec<Vec<Prop>> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_token = true;
                loop {
                    match chars.next() {
                        None => return Err(RouteError::UnterminatedQuote { line: number }),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => current.push(escaped),
                            None => return Err(RouteError::UnterminatedQuote { line: number }),
                        },
                        Some(other) => current.push(other),
                    }
                }
            }
            '#' if !in_token => break,
            ',' => {
                in_token = true;
                parts.push(std::mem::take(&mut current));
            }
            c if c.is_whitespace() => {
                if in_token {
                    parts.push(std::mem::take(&mut current));
                    tokens.push(
                        std::mem::take(&mut parts)
                            .into_iter()
                            .map(split_prop)
                            .collect(),
                    );
                    in_token = false;
                }
            }
            c => {
                in_token = true;
                current.push(c);
            }
        }
    }
    if in_token {
        parts.push(current);
        tokens.push(parts.into_iter().map(split_prop).collect());
    }
    Ok(tokens)
}

fn split_prop(part: String) -> Prop {
    match part.split_once('=') {
        Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
        None => (part, None),
    }
}

/// Parses one line; `Ok(None)` for blank and comment lines.
pub fn parse_line(line: &str, number: usize) -> Result<Option<Route>, RouteError> {
    let mut tokens = tokenize(line, number)?.into_iter();
    let Some(condition) = tokens.next() else {
        return Ok(None);
    };
    let mut props = condition.into_iter();
    let domain = props.next().map(|(name, _)| name).unwrap_or_default();
    let mut route = Route {
        line: number,
        domain: (domain != "*").then(|| domain.to_ascii_lowercase()),
        ..Route::default()
    };
    for (name, value) in props {
        apply_condition_prop(&mut route, &name, value, number)?;
    }
    for token in tokens {
        route.targets.push(parse_target(token, number)?);
    }
    if route.targets.is_empty() {
        return Err(RouteError::MissingTarget { line: number });
    }
    Ok(Some(route))
}

fn need(prop: &str, value: Option<String>, line: usize) -> Result<String, RouteError> {
    value.ok_or_else(|| RouteError::BadValue {
        line,
        prop: prop.to_owned(),
        value: String::new(),
        reason: "a value is required",
    })
}

fn yes_no(prop: &str, value: Option<String>, line: usize) -> Result<bool, RouteError> {
    match value.as_deref() {
        None | Some("yes") | Some("true") | Some("1") => Ok(true),
        Some("no") | Some("false") | Some("0") => Ok(false),
        Some(other) => Err(RouteError::BadValue {
            line,
            prop: prop.to_owned(),
            value: other.to_owned(),
            reason: "expected yes or no",
        }),
    }
}

fn apply_condition_prop(
    route: &mut Route,
    name: &str,
    value: Option<String>,
    line: usize,
) -> Result<(), RouteError> {
    match name {
        "id" => route.id = Some(need(name, value, line)?),
        "path_beg" => route.path_beg = Some(need(name, value, line)?),
        "ssl" => route.ssl = Some(yes_no(name, value, line)?),
        "proto" => {
            route.proto = Some(match need(name, value, line)?.as_str() {
                "http" => Proto::Http,
                "ws" => Proto::Ws,
                other => {
                    return Err(RouteError::BadValue {
                        line,
                        prop: name.to_owned(),
                        value: other.to_owned(),
                        reason: "expected http or ws",
                    })
                }
            })
        }
        "sig_iss" => route.sig_iss = Some(need(name, value, line)?),
        "sig_key" => route.sig_key = Some(need(name, value, line)?),
        "prefix" => route.prefix = Some(need(name, value, line)?),
        "as_host" => route.as_host = Some(need(name, value, line)?),
        "replace_beg" => route.replace_beg = Some(need(name, value, line)?),
        "path_rem" => {
            let value = need(name, value, line)?;
            route.path_rem = value.parse().map_err(|_| RouteError::BadValue {
                line,
                prop: name.to_owned(),
                value,
                reason: "expected a number of characters",
            })?;
        }
        "header" => {
            let value = need(name, value, line)?;
            let Some((header, content)) = value.split_once(':') else {
                return Err(RouteError::BadValue {
                    line,
                    prop: name.to_owned(),
                    value,
                    reason: "expected Name:value",
                });
            };
            route
                .headers
                .push((header.trim().to_owned(), content.trim().to_owned()));
        }
        "no_grip" => route.no_grip = yes_no(name, value, line)?,
        "debug" => route.debug = yes_no(name, value, line)?,
        "cache" => route.cache = yes_no(name, value, line)?,
        "session" => route.session = yes_no(name, value, line)?,
        "aco" => route.aco = yes_no(name, value, line)?,
        "orig_headers" => route.orig_headers = yes_no(name, value, line)?,
        "jsonp_mode" => {
            route.jsonp.extended = match need(name, value, line)?.as_str() {
                "extended" => true,
                "basic" => false,
                other => {
                    return Err(RouteError::BadValue {
                        line,
                        prop: name.to_owned(),
                        value: other.to_owned(),
                        reason: "expected basic or extended",
                    })
                }
            }
        }
        "jsonp_cb" => route.jsonp.callback_param = need(name, value, line)?,
        "jsonp_body" => route.jsonp.body_param = Some(need(name, value, line)?),
        "jsonp_defcb" => route.jsonp.default_callback = Some(need(name, value, line)?),
        "jsonp_defmethod" => {
            let value = need(name, value, line)?;
            route.jsonp.method =
                Some(http::Method::from_bytes(value.as_bytes()).map_err(|_| {
                    RouteError::BadValue {
                        line,
                        prop: name.to_owned(),
                        value: value.clone(),
                        reason: "expected an HTTP method",
                    }
                })?);
        }
        "log_level" => {
            let value = need(name, value, line)?;
            route.log_level = Some(match value.parse::<u8>() {
                Ok(level) if level <= 4 => level,
                _ => {
                    return Err(RouteError::BadValue {
                        line,
                        prop: name.to_owned(),
                        value,
                        reason: "expected a level from 0 (errors) to 4 (trace)",
                    })
                }
            });
        }
        "sockjs" => {
            let prefix = need(name, value, line)?;
            route.sockjs = Some(prefix.trim_end_matches('/').to_owned());
        }
        "sockjs_as_path" => route.sockjs_as_path = Some(need(name, value, line)?),
        other => {
            tracing::warn!(line, prop = other, "unknown route property ignored");
        }
    }
    Ok(())
}

fn parse_target(token: Vec<Prop>, line: usize) -> Result<Target, RouteError> {
    let mut props = token.into_iter();
    let (address, _) = props.next().unwrap_or_default();
    let bad = |reason| RouteError::BadTarget {
        line,
        target: address.clone(),
        reason,
    };
    if address == "test" || address.starts_with("zhttp/") || address.starts_with("zhttpreq/") {
        return Err(bad("only host:port targets are supported"));
    }
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, rest) = rest
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in IPv6 address"))?;
        let port = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("expected [address]:port"))?;
        (host.to_owned(), port)
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port"))?;
        (host.to_owned(), port)
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad("port is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(bad("port is not a number from 1 to 65535"));
    }
    let mut target = Target {
        host,
        port,
        ..Target::default()
    };
    for (name, value) in props {
        match name.as_str() {
            "ssl" => target.ssl = yes_no(&name, value, line)?,
            "insecure" => target.insecure = yes_no(&name, value, line)?,
            "host" => target.host_header = Some(need(&name, value, line)?),
            "over_http" => target.over_http = yes_no(&name, value, line)?,
            "one_event" => target.one_event = yes_no(&name, value, line)?,
            "untrusted" => target.untrusted = yes_no(&name, value, line)?,
            "sub" => target.subs.push(need(&name, value, line)?),
            "trust_connect_host" => {}
            other => tracing::warn!(line, prop = other, "unknown target property ignored"),
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::JsonpConfig;

    #[test]
    fn full_rule() {
        let routes = parse_routes(
            "# comment\n\nexample.com,id=r1,path_beg=/api,replace_beg=/v2,ssl=no,sig_key=\"a b\\\"c\",header=\"X-A: 1\",no_grip,session \
             10.0.0.1:8080,ssl,host=origin.test,insecure [::1]:9000,over_http,sub=news  # trailing\n",
        )
        .unwrap();
        assert_eq!(routes.len(), 1);
        let r = &routes[0];
        assert_eq!(r.line, 3);
        assert_eq!(r.domain.as_deref(), Some("example.com"));
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!(r.path_beg.as_deref(), Some("/api"));
        assert_eq!(r.replace_beg.as_deref(), Some("/v2"));
        assert_eq!(r.ssl, Some(false));
        assert_eq!(r.sig_key.as_deref(), Some("a b\"c"));
        assert_eq!(r.headers, vec![("X-A".to_owned(), "1".to_owned())]);
        assert!(r.no_grip);
        assert!(r.session && !r.cache);
        assert_eq!(r.targets.len(), 2);
        let t = &r.targets[0];
        assert_eq!(
            (t.host.as_str(), t.port, t.ssl, t.insecure),
            ("10.0.0.1", 8080, true, true)
        );
        assert_eq!(t.host_header.as_deref(), Some("origin.test"));
        let t = &r.targets[1];
        assert_eq!((t.host.as_str(), t.port, t.over_http), ("::1", 9000, true));
        assert_eq!(t.subs, vec!["news".to_owned()]);
    }

    #[test]
    fn cross_origin_and_logging_options() {
        let routes = parse_routes(
            "*,aco,orig_headers,jsonp_mode=basic,jsonp_cb=cb,jsonp_body=data,jsonp_defcb=f,jsonp_defmethod=PUT,log_level=3,sockjs=/sock/,sockjs_as_path=/ws h:1\n* h:2",
        )
        .unwrap();
        let r = &routes[0];
        assert!(r.aco && r.orig_headers);
        assert_eq!(
            (r.sockjs.as_deref(), r.sockjs_as_path.as_deref()),
            (Some("/sock"), Some("/ws"))
        );
        assert_eq!(r.log_level, Some(3));
        assert_eq!(
            r.jsonp,
            JsonpConfig {
                extended: false,
                callback_param: "cb".into(),
                body_param: Some("data".into()),
                default_callback: Some("f".into()),
                method: Some(http::Method::PUT),
            }
        );
        let plain = &routes[1];
        assert!(!plain.aco && !plain.orig_headers && plain.log_level.is_none());
        assert_eq!(plain.jsonp.default_method(), http::Method::GET);
    }

    #[test]
    fn wildcard_and_empty_domain() {
        let routes = parse_routes("* localhost:80\n,id=only 127.0.0.1:81").unwrap();
        assert_eq!(routes[0].domain, None);
        assert_eq!(routes[1].domain.as_deref(), Some(""));
        assert_eq!(routes[1].id.as_deref(), Some("only"));
    }

    #[test]
    fn malformed_lines() {
        let cases: &[(&str, RouteError)] = &[
            ("*", RouteError::MissingTarget { line: 1 }),
            (
                "* localhost",
                RouteError::BadTarget {
                    line: 1,
                    target: "localhost".into(),
                    reason: "expected host:port",
                },
            ),
            (
                "* host:http",
                RouteError::BadTarget {
                    line: 1,
                    target: "host:http".into(),
                    reason: "port is not a number from 1 to 65535",
                },
            ),
            (
                "* host:0",
                RouteError::BadTarget {
                    line: 1,
                    target: "host:0".into(),
                    reason: "port is not a number from 1 to 65535",
                },
            ),
            (
                "* host:70000",
                RouteError::BadTarget {
                    line: 1,
                    target: "host:70000".into(),
                    reason: "port is not a number from 1 to 65535",
                },
            ),
            (
                "* :80",
                RouteError::BadTarget {
                    line: 1,
                    target: ":80".into(),
                    reason: "empty host",
                },
            ),
            (
                "* [::1:80",
                RouteError::BadTarget {
                    line: 1,
                    target: "[::1:80".into(),
                    reason: "unclosed [ in IPv6 address",
                },
            ),
            (
                "* test",
                RouteError::BadTarget {
                    line: 1,
                    target: "test".into(),
                    reason: "only host:port targets are supported",
                },
            ),
            (
                "*,sig_key=\"open h:1",
                RouteError::UnterminatedQuote { line: 1 },
            ),
            (
                "*,ssl=maybe h:1",
                RouteError::BadValue {
                    line: 1,
                    prop: "ssl".into(),
                    value: "maybe".into(),
                    reason: "expected yes or no",
                },
            ),
            (
                "*,jsonp_mode=fancy h:1",
                RouteError::BadValue {
                    line: 1,
                    prop: "jsonp_mode".into(),
                    value: "fancy".into(),
                    reason: "expected basic or extended",
                },
            ),
            (
                "*,log_level=9 h:1",
                RouteError::BadValue {
                    line: 1,
                    prop: "log_level".into(),
                    value: "9".into(),
                    reason: "expected a level from 0 (errors) to 4 (trace)",
                },
            ),
            (
                "*,jsonp_defmethod=\"B AD\" h:1",
                RouteError::BadValue {
                    line: 1,
                    prop: "jsonp_defmethod".into(),
                    value: "B AD".into(),
                    reason: "expected an HTTP method",
                },
            ),
            (
                "*,proto=ftp h:1",
                RouteError::BadValue {
                    line: 1,
                    prop: "proto".into(),
                    value: "ftp".into(),
                    reason: "expected http or ws",
                },
            ),
            (
                "*,path_rem=x h:1",
                RouteError::BadValue {
                    line: 1,
                    prop: "path_rem".into(),
                    value: "x".into(),
                    reason: "expected a number of characters",
                },
            ),
            (
                "*,header=nocolon h:1",
                RouteError::BadValue {
                    line: 1,
                    prop: "header".into(),
                    value: "nocolon".into(),
                    reason: "expected Name:value",
                },
            ),
            (
                "*,path_beg h:1",
                RouteError::BadValue {
                    line: 1,
                    prop: "path_beg".into(),
                    value: String::new(),
                    reason: "a value is required",
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_routes(text).as_ref(), Err(expected), "{text}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_routes("* h:1\n\n* nope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: bad target \"nope\": expected host:port"
        );
    }
}
