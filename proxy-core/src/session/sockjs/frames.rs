//! SockJS framing (sockjs-protocol 0.3): what a session sends its client,
//! one frame at a time (`o` open, `h` heartbeat, `a[...]` messages, `c[code,
//! "reason"]` close), and the client's messages (a JSON array of strings,
//! or over WebSocket also one JSON string).

/// A frame for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The session is open.
    Open,
    /// Nothing to say; still here.
    Heartbeat,
    /// Messages, in order.
    Messages(Vec<String>),
    /// The session is over.
    Close(u16, String),
}

impl Frame {
    /// The frame as SockJS writes it.
    pub fn encode(&self) -> String {
        match self {
            Frame::Open => "o".into(),
            Frame::Heartbeat => "h".into(),
            Frame::Messages(messages) => format!("a{}", quote_all(messages)),
            Frame::Close(code, reason) => format!("c[{code},{}]", quote(reason)),
        }
    }
}

/// A JSON string as SockJS sends it: besides JSON's escapes, the
/// characters JavaScript engines or browsers mangle (line and paragraph
/// separators, invisible formatting characters) are escaped too, as the
/// SockJS servers do.
fn quote(text: &str) -> String {
    let json = serde_json::Value::String(text.to_owned()).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        let code = c as u32;
        let escape = matches!(code, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff)
            || (0x7f..=0x9f).contains(&code);
        if escape {
            out.push_str(&format!("\\u{code:04x}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn quote_all(messages: &[String]) -> String {
    let quoted: Vec<String> = messages.iter().map(|m| quote(m)).collect();
    format!("[{}]", quoted.join(","))
}

/// Why a client's payload was refused (SockJS answers both with 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Nothing was sent.
    #[error("Payload expected.")]
    Empty,
    /// Not a JSON array of strings.
    #[error("Broken JSON encoding.")]
    Broken,
}

/// The messages of a client's payload: a JSON array of strings; over
/// WebSocket (`single`) one JSON string is accepted too.
pub fn messages(payload: &[u8], single: bool) -> Result<Vec<String>, PayloadError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(PayloadError::Broken),
            })
            .collect(),
        Ok(serde_json::Value::String(s)) if single => Ok(vec![s]),
        _ => Err(PayloadError::Broken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_as_sockjs_writes_them() {
        assert_eq!(Frame::Open.encode(), "o");
        assert_eq!(Frame::Heartbeat.encode(), "h");
        assert_eq!(
            Frame::Messages(vec!["a\"b".into(), "c\u{2028}".into()]).encode(),
            "a[\"a\\\"b\",\"c\\u2028\"]"
        );
        assert_eq!(
            Frame::Close(3000, "Go away!".into()).encode(),
            "c[3000,\"Go away!\"]"
        );
    }

    #[test]
    fn client_payloads() {
        assert_eq!(
            messages(b"[\"x\",\"y\"]", false),
            Ok(vec!["x".into(), "y".into()])
        );
        assert_eq!(messages(b"\"x\"", true), Ok(vec!["x".into()]));
        assert_eq!(messages(b"\"x\"", false), Err(PayloadError::Broken));
        assert_eq!(messages(b"", false), Err(PayloadError::Empty));
        assert_eq!(messages(b"[1]", false), Err(PayloadError::Broken));
        assert_eq!(messages(b"[\"x\"", false), Err(PayloadError::Broken));
        assert_eq!(messages(b"{}", true), Err(PayloadError::Broken));
    }
}
