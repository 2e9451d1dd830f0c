//! What the edge cache may store, and for how long: the rules of a shared
//! cache that is also a surrogate (the origin's `Surrogate-Control` speaks
//! to it and wins over `Cache-Control`, as on Fastly). Freshness per RFC
//! 9111 4.2: `s-maxage`, `max-age`, else `Expires` less `Date`, less the
//! `Age` the answer already has; `must-revalidate` and `proxy-revalidate`
//! forbid serving it stale.

use holdfast_protocol::zhttp::Header;
use http::HeaderMap;
use std::time::Duration;

/// How long a stale object may still serve while the origin fails, when
/// the origin does not say (`stale-if-error`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Statuses a shared cache may store without being told (RFC 9111 4.2.2's
/// heuristically cacheable set, less the partial and redirect ones that
/// need more care).
const STORABLE: &[u16] = &[200, 203, 204, 300, 301, 404, 410];

/// How long a stored answer is fresh, then how long it may still serve
/// while the origin fails, or while it is refreshed in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Fresh for this long.
    pub ttl: Duration,
    /// Then stale but usable on origin errors for this long
    /// (`stale-if-error`).
    pub grace: Duration,
    /// Then stale but served at once while one request refreshes it, for
    /// this long (`stale-while-revalidate`).
    pub swr: Duration,
}

/// Whether (and how long) an origin answer may be stored; `None`: not.
pub fn storable(status: u16, headers: &HeaderMap) -> Option<Freshness> {
    if !STORABLE.contains(&status) || headers.contains_key(http::header::SET_COOKIE) {
        return None;
    }
    if vary_names(headers).iter().any(|n| n == "*") {
        return None;
    }
    let surrogate = directives(headers, "surrogate-control");
    let cache_control = directives(headers, "cache-control");
    let seconds = |list: &[(String, Option<String>)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref()?.parse::<u64>().ok())
    };
    let lifetime = match seconds(&surrogate, "max-age") {
        Some(ttl) => ttl,
        None => {
            let refused = ["no-store", "private", "no-cache"];
            if cache_control
                .iter()
                .any(|(n, _)| refused.contains(&n.as_str()))
            {
                return None;
            }
            seconds(&cache_control, "s-maxage")
                .or_else(|| seconds(&cache_control, "max-age"))
                .or_else(|| expires_lifetime(headers))?
        }
    };
    // Already this old when it arrived (from another cache).
    let age = headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let ttl = lifetime.saturating_sub(age);
    if ttl == 0 {
        return None;
    }
    let strict = cache_control
        .iter()
        .any(|(n, _)| n == "must-revalidate" || n == "proxy-revalidate");
    let extension = |name: &str| {
        seconds(&surrogate, name)
            .or_else(|| seconds(&cache_control, name))
            .map(Duration::from_secs)
    };
    let (grace, swr) = if strict {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (
            extension("stale-if-error").unwrap_or(DEFAULT_GRACE),
            extension("stale-while-revalidate").unwrap_or(Duration::ZERO),
        )
    };
    Some(Freshness {
        ttl: Duration::from_secs(ttl),
        grace,
        swr,
    })
}

/// `Expires` less `Date` (or now, without one), in seconds; `None` without
/// `Expires`, zero for an invalid or past one (RFC 9111 5.3).
fn expires_lifetime(headers: &HeaderMap) -> Option<u64> {
    let date = |name: http::header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| httpdate::parse_http_date(v.trim()).ok())
    };
    let expires = date(http::header::EXPIRES)?;
    let now = date(http::header::DATE)
        .flatten()
        .unwrap_or_else(std::time::SystemTime::now);
    Some(
        expires
            .and_then(|e| e.duration_since(now).ok())
            .map_or(0, |d| d.as_secs()),
    )
}

/// Whether an answer that may not be stored may still go to every request
/// that waited for it (not meant for one user: no `private`, `no-store`
/// or `Set-Cookie`).
pub fn shareable(headers: &HeaderMap) -> bool {
    !headers.contains_key(http::header::SET_COOKIE)
        && !directives(headers, "cache-control")
            .iter()
            .any(|(n, _)| n == "private" || n == "no-store")
}

/// Requests a shared cache must not answer from, nor store for: personal
/// ones (credentials or cookies), as Varnish's built-in rules decide.
pub fn personal(headers: &[Header]) -> bool {
    headers.iter().any(|Header(name, _)| {
        name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie")
    })
}

/// The request header names an answer varies on, lower-cased.
pub fn vary_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The answer's `Surrogate-Key`s (space-separated, possibly repeated).
pub fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("surrogate-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

/// `name[=value]` directives of a comma-separated header, names
/// lower-cased, quotes removed.
fn directives(headers: &HeaderMap, header: &str) -> Vec<(String, Option<String>)> {
    headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let d = d.trim();
            if d.is_empty() {
                return None;
            }
            Some(match d.split_once('=') {
                Some((n, v)) => (
                    n.trim().to_ascii_lowercase(),
                    Some(v.trim().trim_matches('"').to_owned()),
                ),
                None => (d.to_ascii_lowercase(), None),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in list {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ttl(status: u16, list: &[(&str, &str)]) -> Option<u64> {
        storable(status, &headers(list)).map(|f| f.ttl.as_secs())
    }

    #[test]
    fn freshness_comes_from_surrogate_control_then_cache_control() {
        assert_eq!(ttl(200, &[("cache-control", "max-age=60")]), Some(60));
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=60, s-maxage=600")]),
            Some(600)
        );
        assert_eq!(
            ttl(
                200,
                &[
                    ("surrogate-control", "max-age=30"),
                    ("cache-control", "no-store")
                ]
            ),
            Some(30),
            "Surrogate-Control wins"
        );
        assert_eq!(ttl(404, &[("cache-control", "max-age=5")]), Some(5));
    }

    #[test]
    fn age_expires_and_must_revalidate() {
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=30"), ("age", "10")]),
            Some(20)
        );
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=30"), ("age", "100")]),
            None
        );
        let date = "Fri, 27 Nov 2026 12:00:00 GMT";
        let expires = "Fri, 27 Nov 2026 12:01:40 GMT";
        assert_eq!(ttl(200, &[("date", date), ("expires", expires)]), Some(100));
        assert_eq!(
            ttl(
                200,
                &[
                    ("date", date),
                    ("expires", expires),
                    ("cache-control", "max-age=5")
                ]
            ),
            Some(5),
            "max-age wins over Expires"
        );
        assert_eq!(ttl(200, &[("date", date), ("expires", "0")]), None);
        assert_eq!(ttl(200, &[("date", expires), ("expires", date)]), None);
        let strict = storable(
            200,
            &headers(&[(
                "cache-control",
                "max-age=5, must-revalidate, stale-if-error=60, stale-while-revalidate=60",
            )]),
        )
        .unwrap();
        assert_eq!((strict.grace, strict.swr), (Duration::ZERO, Duration::ZERO));
        let swr = storable(
            200,
            &headers(&[("cache-control", "max-age=5, stale-while-revalidate=30")]),
        )
        .unwrap();
        assert_eq!(swr.swr, Duration::from_secs(30));
    }

    #[test]
    fn what_is_not_stored() {
        for list in [
            &[][..],
            &[("cache-control", "max-age=0")][..],
            &[("cache-control", "private, max-age=60")][..],
            &[("cache-control", "no-cache, s-maxage=60")][..],
            &[("cache-control", "max-age=soon")][..],
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")][..],
            &[("cache-control", "max-age=60"), ("vary", "Accept, *")][..],
        ] {
            assert_eq!(ttl(200, list), None, "{list:?}");
        }
        assert_eq!(ttl(500, &[("cache-control", "max-age=60")]), None);
        assert_eq!(ttl(206, &[("cache-control", "max-age=60")]), None);
    }

    #[test]
    fn grace_from_stale_if_error() {
        let f = storable(
            200,
            &headers(&[("cache-control", "max-age=1, stale-if-error=120")]),
        )
        .unwrap();
        assert_eq!(f.grace, Duration::from_secs(120));
        let f = storable(200, &headers(&[("cache-control", "max-age=1")])).unwrap();
        assert_eq!(f.grace, DEFAULT_GRACE);
    }

    #[test]
    fn vary_keys_and_personal_requests() {
        let h = headers(&[
            ("vary", "Accept, accept-encoding"),
            ("surrogate-key", "a b"),
            ("surrogate-key", "c"),
        ]);
        assert_eq!(vary_names(&h), ["accept", "accept-encoding"]);
        assert_eq!(surrogate_keys(&h), ["a", "b", "c"]);
        let h = |n: &str| vec![Header(n.to_owned(), bytes::Bytes::from_static(b"x"))];
        assert!(personal(&h("Cookie")));
        assert!(personal(&h("authorization")));
        assert!(!personal(&h("accept")));
    }
}
