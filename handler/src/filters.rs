//! Subscription filters (named in `Grip-Channel: ch; filter=...`), as
//! Pushpin announces them in `Grip-Feature`:
//! - delivery filters drop an item for one session: `skip-self` (the
//!   session's `user` meta is the item's `sender`), `skip-users` (it is in
//!   the item's comma-separated `skip_users`), `require-sub` (the session is
//!   not subscribed to the item's `require_sub` channel);
//! - content filters rewrite the content: `build-id` (`%I` becomes the id
//!   built from the session's `id_format` meta, where `%(channel)s` is the
//!   last id that session got on that channel) and `var-subst` (`%(name)s`
//!   becomes the session's `name` meta). `%%` is a literal `%`.
//!
//! An item that names `content-filters` is only delivered to sessions
//! whose content filters are exactly those, so a publisher's `%I` never
//! reaches a client unrendered.

use bytes::Bytes;

/// Filters that rewrite content.
const CONTENT_FILTERS: &[&str] = &["build-id", "var-subst"];

/// What a session knows when filtering one item.
pub struct Subscriber<'a> {
    /// The channel's filters, in order.
    pub filters: &'a [String],
    /// The session's meta (`Grip-Set-Meta`).
    pub meta: &'a [(String, String)],
    /// Whether the session is subscribed to a channel (as the origin names it).
    pub subscribed: &'a dyn Fn(&str) -> bool,
    /// The last id the session got on a channel (as the origin names it).
    pub last_id: &'a dyn Fn(&str) -> Option<String>,
}

fn meta<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Subscriber<'_> {
    fn has(&self, filter: &str) -> bool {
        self.filters.iter().any(|f| f == filter)
    }

    /// Whether a delivery filter drops an item published with `pub_meta`.
    pub fn drops(&self, pub_meta: &[(String, String)]) -> bool {
        let user = meta(self.meta, "user");
        if self.has("skip-self") && user.is_some() && user == meta(pub_meta, "sender") {
            return true;
        }
        if self.has("skip-users") {
            if let (Some(user), Some(list)) = (user, meta(pub_meta, "skip_users")) {
                if list.split(',').any(|u| u.trim() == user) {
                    return true;
                }
            }
        }
        if self.has("require-sub") {
            if let Some(channel) = meta(pub_meta, "require_sub") {
                if !(self.subscribed)(channel) {
                    return true;
                }
            }
        }
        false
    }

    /// Whether the item's declared content filters (if any) are this
    /// subscription's.
    pub fn accepts(&self, declared: Option<&[String]>) -> bool {
        let Some(declared) = declared else {
            return true;
        };
        let ours = self
            .filters
            .iter()
            .filter(|f| CONTENT_FILTERS.contains(&f.as_str()));
        ours.map(String::as_str)
            .eq(declared.iter().map(String::as_str))
    }

    /// Applies the content filters; the content is shared untouched when
    /// there are none.
    pub fn content(&self, content: &Bytes) -> Bytes {
        let mut out = content.clone();
        for filter in self.filters {
            out = match filter.as_str() {
                "build-id" => {
                    let id = self.build_id();
                    substitute(&out, |name| match name {
                        None => Some(id.clone()),
                        Some(_) => None,
                    })
                }
                "var-subst" => substitute(&out, |name| {
                    name.and_then(|n| meta(self.meta, n)).map(str::to_owned)
                }),
                _ => continue,
            };
        }
        out
    }

    /// The id from `id_format`, `%(channel)s` replaced by the last id on
    /// that channel; hex-encoded when `id_encoding=hex`.
    fn build_id(&self) -> String {
        let format = meta(self.meta, "id_format").unwrap_or("");
        let built = substitute(format.as_bytes(), |name| {
            name.map(|channel| (self.last_id)(channel).unwrap_or_default())
        });
        let text = String::from_utf8_lossy(&built).into_owned();
        if meta(self.meta, "id_encoding") == Some("hex") {
            text.bytes().map(|b| format!("{b:02x}")).collect()
        } else {
            text
        }
    }
}

/// Replaces `%I` (`name` = None) and `%(name)s` (`name` = Some) with what
/// `value` gives; `%%` becomes `%`; anything `value` declines stays as it was.
fn substitute(input: &[u8], value: impl Fn(Option<&str>) -> Option<String>) -> Bytes {
    if !input.contains(&b'%') {
        return Bytes::copy_from_slice(input);
    }
    let mut out = Vec::with_capacity(input.len() + 16);
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c != b'%' || i + 1 >= input.len() {
            out.push(c);
            i += 1;
            continue;
        }
        match input[i + 1] {
            b'%' => {
                out.push(b'%');
                i += 2;
            }
            b'I' => match value(None) {
                Some(v) => {
                    out.extend_from_slice(v.as_bytes());
                    i += 2;
                }
                None => {
                    out.extend_from_slice(b"%I");
                    i += 2;
                }
            },
            b'(' => {
                let rest = &input[i + 2..];
                let end = rest.windows(2).position(|w| w == b")s");
                let name = end.and_then(|e| std::str::from_utf8(&rest[..e]).ok());
                match (end, name.and_then(|n| value(Some(n)))) {
                    (Some(e), Some(v)) => {
                        out.extend_from_slice(v.as_bytes());
                        i += 2 + e + 2;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(b'%');
                i += 1;
            }
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn with<R>(filters: &[&str], meta: &[(&str, &str)], f: impl FnOnce(&Subscriber<'_>) -> R) -> R {
        let filters: Vec<String> = filters.iter().map(|s| (*s).to_owned()).collect();
        let meta = pairs(meta);
        let subscribed = |c: &str| c == "events-a" || c == "user-1";
        let last_id = |c: &str| match c {
            "events-a" => Some("7".to_owned()),
            _ => None,
        };
        f(&Subscriber {
            filters: &filters,
            meta: &meta,
            subscribed: &subscribed,
            last_id: &last_id,
        })
    }

    #[test]
    fn delivery_filters() {
        let user = [("user", "1")];
        with(&["skip-self"], &user, |s| {
            assert!(s.drops(&pairs(&[("sender", "1")])));
            assert!(!s.drops(&pairs(&[("sender", "2")])));
            assert!(!s.drops(&[]));
        });
        with(&["skip-users"], &user, |s| {
            assert!(s.drops(&pairs(&[("skip_users", "3, 1")])));
            assert!(!s.drops(&pairs(&[("skip_users", "3,11")])));
        });
        with(&["require-sub"], &user, |s| {
            assert!(!s.drops(&pairs(&[("require_sub", "events-a")])));
            assert!(s.drops(&pairs(&[("require_sub", "events-b")])));
        });
        // Without the filter, the meta is ignored.
        with(&[], &user, |s| {
            assert!(!s.drops(&pairs(&[("sender", "1"), ("skip_users", "1")])))
        });
    }

    #[test]
    fn content_filters_must_match_when_declared() {
        let build = vec!["build-id".to_owned()];
        with(&["build-id", "skip-users"], &[], |s| {
            assert!(s.accepts(None));
            assert!(s.accepts(Some(&build)));
            assert!(!s.accepts(Some(&[])));
        });
        with(&["skip-users"], &[], |s| {
            assert!(s.accepts(Some(&[])));
            assert!(!s.accepts(Some(&build)));
        });
    }

    #[test]
    fn build_id_renders_the_django_eventstream_format() {
        let meta = [("id_format", "a:%(events-a)s,b:%(events-b)s")];
        with(&["build-id"], &meta, |s| {
            let out = s.content(&Bytes::from_static(b"event: m\nid: %I\ndata: 100%% {}\n\n"));
            assert_eq!(&out[..], b"event: m\nid: a:7,b:\ndata: 100% {}\n\n");
        });
        with(
            &["build-id"],
            &[("id_format", "%(events-a)s"), ("id_encoding", "hex")],
            |s| {
                assert_eq!(&s.content(&Bytes::from_static(b"%I"))[..], b"37");
            },
        );
    }

    #[test]
    fn var_subst_and_odd_percent_signs() {
        with(&["var-subst"], &[("name", "Ann")], |s| {
            assert_eq!(
                &s.content(&Bytes::from_static(b"hi %(name)s %(nope)s %( 5% %"))[..],
                b"hi Ann %(nope)s %( 5% %"
            );
        });
        with(&[], &[("name", "Ann")], |s| {
            let content = Bytes::from_static(b"%(name)s");
            assert_eq!(s.content(&content), content);
        });
    }
}
