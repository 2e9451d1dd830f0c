//! Channel names as NATS subjects: `<prefix>.ch.<channel>`, the channel
//! encoded so that any name is one subject token. Letters, digits, `_` and
//! `-` stay as they are; every other byte (`.`, `*`, `>`, spaces, `%`,
//! non-ASCII...) becomes `%` and two upper-case hex digits. So `news` is
//! `holdfast.ch.news` and `a.b` is `holdfast.ch.a%2Eb`; a publisher that
//! talks to NATS directly encodes the same way.

/// The subject items of `channel` are published on.
pub fn subject(prefix: &str, channel: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4 + channel.len());
    out.push_str(prefix);
    out.push_str(".ch.");
    for &b in channel.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The channel a subject names, when it is one of `prefix`'s channel
/// subjects and well encoded.
pub fn channel(prefix: &str, subject: &str) -> Option<String> {
    let token = subject.strip_prefix(prefix)?.strip_prefix(".ch.")?;
    if token.is_empty() {
        return None;
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2)?;
            let text = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(text, 16).ok()?);
            rest = &tail[2..];
        } else if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            bytes.push(b);
            rest = tail;
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_read_as_themselves() {
        assert_eq!(subject("holdfast", "news"), "holdfast.ch.news");
        assert_eq!(subject("hf", "user_1-x"), "hf.ch.user_1-x");
    }

    #[test]
    fn any_name_is_one_token_and_comes_back() {
        for name in ["a.b", "*", ">", "a b", "50%", "ünï/cödé", "a.*.>", "%2E"] {
            let s = subject("holdfast", name);
            let token = s.strip_prefix("holdfast.ch.").unwrap();
            assert!(
                !token.contains(['.', '*', '>', ' ']),
                "{name:?} -> {s:?} is not one plain token"
            );
            assert_eq!(channel("holdfast", &s).as_deref(), Some(name));
        }
        assert_eq!(subject("holdfast", "a.b"), "holdfast.ch.a%2Eb");
    }

    #[test]
    fn malformed_subjects_name_no_channel() {
        for bad in [
            "holdfast.ch.",
            "holdfast.ch.a.b",
            "holdfast.ch.%2",
            "holdfast.ch.%zz",
            "holdfast.ch.%FF",
            "other.ch.news",
            "holdfast.news",
        ] {
            assert_eq!(channel("holdfast", bad), None, "{bad}");
        }
    }
}
