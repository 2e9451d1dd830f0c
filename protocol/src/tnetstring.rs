//! TNetString: the codec Pushpin's components speak on every ZeroMQ socket.
//!
//! Every value is `<decimal length>:<payload><marker>`, the length counting only
//! the payload. Markers: `,` bytes, `#` integer, `^` float, `!` boolean, `~`
//! null, `]` list, `}` dict (alternating key/value, keys are byte strings).
//!
//! [`parse`] is a pure function over a slice: `Ok(None)` means "need more bytes"
//! (only possible for the outermost value), every other defect is an [`Error`].
//! Lengths are checked against [`MAX_LENGTH`] before anything is sliced, and
//! nesting against [`MAX_DEPTH`], so hostile input cannot make the parser
//! allocate or recurse without bound.

use crate::value::Value;
use std::fmt;

/// Longest payload a single value may declare (64 MiB). ZHTTP packets carry
/// bounded body chunks (credits), so anything near this is an attack or a bug.
pub const MAX_LENGTH: usize = 64 * 1024 * 1024;

/// Deepest nesting accepted. Real packets nest four levels (dict, header list,
/// header pair, value); 64 leaves room for `user-data` without risking the stack.
pub const MAX_DEPTH: usize = 64;

/// Digits allowed in a length prefix: enough for [`MAX_LENGTH`].
const MAX_LENGTH_DIGITS: usize = 9;

/// Why a TNetString could not be parsed or produced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The length prefix is not a decimal number followed by `:`.
    #[error("bad length prefix at byte {offset}")]
    BadLength {
        /// Byte offset of the value in the input.
        offset: usize,
    },
    /// The declared payload length exceeds [`MAX_LENGTH`].
    #[error("declared length {declared} exceeds the limit of {MAX_LENGTH} bytes")]
    TooLong {
        /// The length the input declared.
        declared: usize,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The type marker after the payload is not one of `,#^!~]}`.
    #[error("unknown type marker {marker:?} at byte {offset}")]
    BadMarker {
        /// The marker byte found.
        marker: char,
        /// Byte offset of the marker.
        offset: usize,
    },
    /// A `#` payload is not a decimal integer that fits in 64 bits.
    #[error("invalid integer payload")]
    BadInt,
    /// A `^` payload is not a decimal number.
    #[error("invalid float payload")]
    BadFloat,
    /// A `!` payload is neither `true` nor `false`.
    #[error("invalid boolean payload")]
    BadBool,
    /// A `~` payload is not empty.
    #[error("null with a non-empty payload")]
    BadNull,
    /// A dict key is not a byte string, or a dict has a key without a value.
    #[error("dict key is not a byte string or has no value")]
    BadKey,
    /// A value inside a container runs past the container's end, or the
    /// input ended before the value did (when a complete value was required).
    #[error("value truncated")]
    Truncated,
    /// Bytes follow the value where the input should have ended.
    #[error("{extra} unexpected bytes after the value")]
    Trailing {
        /// How many bytes were left over.
        extra: usize,
    },
    /// The value is well formed but does not fit the expected shape.
    #[error("{0}")]
    Shape(String),
}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Shape(msg.to_string())
    }
}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Shape(msg.to_string())
    }
}

/// Parses one value from the start of `input`.
///
/// Returns `Ok(None)` when `input` is a valid but incomplete prefix, and
/// otherwise the value and how many bytes it used.
pub fn parse(input: &[u8]) -> Result<Option<(Value, usize)>, Error> {
    parse_at(input, 0, 0)
}

/// Parses `input` as exactly one complete value (a ZeroMQ frame).
pub fn parse_complete(input: &[u8]) -> Result<Value, Error> {
    match parse(input)? {
        None => Err(Error::Truncated),
        Some((value, used)) if used == input.len() => Ok(value),
        Some((_, used)) => Err(Error::Trailing {
            extra: input.len() - used,
        }),
    }
}

fn parse_at(input: &[u8], base: usize, depth: usize) -> Result<Option<(Value, usize)>, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep);
    }
    let Some(colon) = input
        .iter()
        .take(MAX_LENGTH_DIGITS + 1)
        .position(|&b| b == b':')
    else {
        let digits = input.len().min(MAX_LENGTH_DIGITS + 1);
        if input.len() <= MAX_LENGTH_DIGITS && input[..digits].iter().all(u8::is_ascii_digit) {
            return Ok(None);
        }
        return Err(Error::BadLength { offset: base });
    };
    let digits = &input[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadLength { offset: base });
    }
    let declared = digits
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    if declared > MAX_LENGTH {
        return Err(Error::TooLong { declared });
    }
    let start = colon + 1;
    let end = start + declared;
    if input.len() <= end {
        return Ok(None);
    }
    let payload = &input[start..end];
    let marker = input[end];
    let value = match marker {
        b',' => Value::Bytes(payload.to_vec()),
        b'#' => Value::Int(parse_int(payload)?),
        b'^' => Value::Float(
            std::str::from_utf8(payload)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or(Error::BadFloat)?,
        ),
        b'!' => match payload {
            b"true" => Value::Bool(true),
            b"false" => Value::Bool(false),
            _ => return Err(Error::BadBool),
        },
        b'~' if payload.is_empty() => Value::Null,
        b'~' => return Err(Error::BadNull),
        b']' => {
            let mut items = Vec::new();
            let mut pos = 0;
            while pos < payload.len() {
                let (item, used) = parse_inner(&payload[pos..], base + start + pos, depth)?;
                items.push(item);
                pos += used;
            }
            Value::List(items)
        }
        b'}' => {
            let mut entries = Vec::new();
            let mut pos = 0;
            while pos < payload.len() {
                let (key, used) = parse_inner(&payload[pos..], base + start + pos, depth)?;
                let Value::Bytes(key) = key else {
                    return Err(Error::BadKey);
                };
                pos += used;
                if pos >= payload.len() {
                    return Err(Error::BadKey);
                }
                let (value, used) = parse_inner(&payload[pos..], base + start + pos, depth)?;
                pos += used;
                entries.push((key, value));
            }
            Value::Map(entries)
        }
        other => {
            return Err(Error::BadMarker {
                marker: char::from(other),
                offset: base + end,
            })
        }
    };
    Ok(Some((value, end + 1)))
}

/// A value inside a container must be complete: the container's length said so.
fn parse_inner(input: &[u8], base: usize, depth: usize) -> Result<(Value, usize), Error> {
    parse_at(input, base, depth + 1)?.ok_or(Error::Truncated)
}

fn parse_int(payload: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(payload)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(Error::BadInt)
}

/// Appends the encoding of `value` to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"0:~"),
        Value::Bool(true) => out.extend_from_slice(b"4:true!"),
        Value::Bool(false) => out.extend_from_slice(b"5:false!"),
        Value::Int(n) => write_scalar(itoa::Buffer::new().format(*n).as_bytes(), b'#', out),
        Value::Float(f) => write_scalar(format_float(*f).as_bytes(), b'^', out),
        Value::Bytes(b) => write_scalar(b, b',', out),
        Value::List(items) => write_container(out, b']', |out| {
            for item in items {
                write(item, out);
            }
        }),
        Value::Map(entries) => write_container(out, b'}', |out| {
            for (key, value) in entries {
                write_scalar(key, b',', out);
                write(value, out);
            }
        }),
    }
}

/// Encodes `value` into a new buffer.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

// Lengths and integers are formatted on the stack: a packet of 1,024
// session ids has thousands of them.
fn write_scalar(payload: &[u8], marker: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(payload.len()).as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(marker);
}

/// Writes the payload first and the length prefix after, by shifting: avoids
/// a second pass to measure nested containers.
fn write_container(out: &mut Vec<u8>, marker: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    body(out);
    let len = out.len() - start;
    let mut digits = itoa::Buffer::new();
    let prefix = digits.format(len).as_bytes().iter().copied();
    out.splice(start..start, prefix.chain([b':']));
    out.push(marker);
}

/// Floats must read back equal, and TNetString has no syntax for infinities.
fn format_float(f: f64) -> String {
    if f.is_finite() {
        format!("{f:?}")
    } else {
        "0.0".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn scalars_by_hand() {
        assert_eq!(parse_complete(b"5:hello,"), Ok(bytes("hello")));
        assert_eq!(parse_complete(b"0:,"), Ok(bytes("")));
        assert_eq!(parse_complete(b"2:42#"), Ok(Value::Int(42)));
        assert_eq!(parse_complete(b"3:-17#"), Ok(Value::Int(-17)));
        assert_eq!(parse_complete(b"4:2.50^"), Ok(Value::Float(2.5)));
        assert_eq!(parse_complete(b"4:true!"), Ok(Value::Bool(true)));
        assert_eq!(parse_complete(b"5:false!"), Ok(Value::Bool(false)));
        assert_eq!(parse_complete(b"0:~"), Ok(Value::Null));
    }

    #[test]
    fn containers_by_hand() {
        let list = parse_complete(b"12:1:a,2:bc,0:~]").unwrap();
        assert_eq!(
            list,
            Value::List(vec![bytes("a"), bytes("bc"), Value::Null])
        );
        let dict = parse_complete(b"16:1:k,1:v,1:n,1:1#}").unwrap();
        assert_eq!(
            dict,
            Value::Map(vec![
                (b"k".to_vec(), bytes("v")),
                (b"n".to_vec(), Value::Int(1))
            ])
        );
        assert_eq!(parse_complete(b"0:]"), Ok(Value::List(vec![])));
        assert_eq!(parse_complete(b"0:}"), Ok(Value::Map(vec![])));
    }

    #[test]
    fn binary_payload_is_kept() {
        let v = parse_complete(b"3:\x00:,,").unwrap();
        assert_eq!(v, Value::Bytes(vec![0, b':', b',']));
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"12"), Ok(None));
        assert_eq!(parse(b"5:hel"), Ok(None));
        assert_eq!(parse(b"5:hello"), Ok(None));
        assert_eq!(parse(b"5:hello,rest"), Ok(Some((bytes("hello"), 8))));
    }

    #[test]
    fn malformed_inputs() {
        let cases: &[(&[u8], Error)] = &[
            (b"x:abc,", Error::BadLength { offset: 0 }),
            (b":abc,", Error::BadLength { offset: 0 }),
            (b"-1:a,", Error::BadLength { offset: 0 }),
            (b"1234567890123:a,", Error::BadLength { offset: 0 }),
            (
                b"999999999:a,",
                Error::TooLong {
                    declared: 999_999_999,
                },
            ),
            (
                b"1:a?",
                Error::BadMarker {
                    marker: '?',
                    offset: 3,
                },
            ),
            (b"2:4x#", Error::BadInt),
            (b"2:+4#", Error::BadInt),
            (b"20:99999999999999999999#", Error::BadInt),
            (b"3:abc^", Error::BadFloat),
            (b"3:yes!", Error::BadBool),
            (b"1:x~", Error::BadNull),
            (b"4:1:a,}", Error::BadKey),
            (b"4:1:1#}", Error::BadKey),
            (b"5:3:ab,]", Error::Truncated),
            (b"5:hello", Error::Truncated),
            (b"1:a,x", Error::Trailing { extra: 1 }),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_complete(input).as_ref(),
                Err(expected),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn depth_is_bounded() {
        let mut encoded = b"0:]".to_vec();
        for _ in 0..(MAX_DEPTH + 2) {
            let mut outer = format!("{}:", encoded.len()).into_bytes();
            outer.extend_from_slice(&encoded);
            outer.push(b']');
            encoded = outer;
        }
        assert_eq!(parse_complete(&encoded), Err(Error::TooDeep));
    }

    #[test]
    fn writer_matches_hand_encoding() {
        let v = Value::Map(vec![
            (
                b"a".to_vec(),
                Value::List(vec![Value::Int(1), Value::Bool(false)]),
            ),
            (b"b".to_vec(), Value::Null),
        ]);
        assert_eq!(to_vec(&v), b"27:1:a,12:1:1#5:false!]1:b,0:~}".to_vec());
    }
}
