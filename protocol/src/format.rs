//! The one-byte format tag in front of every encoded frame: `T` TNetString,
//! `M` MessagePack (and `J` JSON, accepted on publish inputs only).

use crate::{msgpack, tnetstring, value};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encoding of a frame body, chosen by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `T`: what Pushpin's components speak.
    #[default]
    TNetString,
    /// `M`: MessagePack, more compact and faster to parse.
    MessagePack,
}

impl Format {
    /// The tag byte written in front of the frame.
    pub fn tag(self) -> u8 {
        match self {
            Format::TNetString => b'T',
            Format::MessagePack => b'M',
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tnetstring" | "T" => Ok(Format::TNetString),
            "msgpack" | "messagepack" | "M" => Ok(Format::MessagePack),
            other => Err(format!(
                "unknown format {other:?}: expected \"tnetstring\" or \"msgpack\""
            )),
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame is empty.
    #[error("empty frame")]
    Empty,
    /// The first byte is not a known format tag.
    #[error("unknown format tag {0:?}")]
    UnknownTag(char),
    /// The TNetString body is malformed or has the wrong shape.
    #[error("TNetString: {0}")]
    TNetString(#[from] tnetstring::Error),
    /// The MessagePack body is malformed or has the wrong shape.
    #[error("MessagePack: {0}")]
    MessagePack(#[from] msgpack::Error),
}

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The value does not map onto TNetString.
    #[error("TNetString: {0}")]
    TNetString(#[from] tnetstring::Error),
    /// The value does not map onto MessagePack.
    #[error("MessagePack: {0}")]
    MessagePack(#[from] msgpack::Error),
}

/// Decodes a tagged frame (`T...` or `M...`) into `T`.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, DecodeError> {
    let (&tag, body) = frame.split_first().ok_or(DecodeError::Empty)?;
    match tag {
        b'T' => {
            let value = tnetstring::parse_complete(body)?;
            Ok(value::from_value(&value)?)
        }
        b'M' => Ok(msgpack::from_slice(body)?),
        other => Err(DecodeError::UnknownTag(char::from(other))),
    }
}

/// Encodes `value` as a tagged frame, appending to `out`.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    format: Format,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.push(format.tag());
    match format {
        Format::TNetString => tnetstring::write(&value::to_value(value)?, out),
        Format::MessagePack => out.extend_from_slice(&msgpack::to_vec(value)?),
    }
    Ok(())
}

/// Encodes `value` as a tagged frame.
pub fn encode<T: Serialize + ?Sized>(value: &T, format: Format) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(value, format, &mut out)?;
    Ok(out)
}

/// Splits a PUB/SUB frame `"<recipient> <tagged body>"` at the first space.
pub fn split_topic(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = frame.iter().position(|&b| b == b' ')?;
    Some((&frame[..space], &frame[space + 1..]))
}

/// Builds a PUB/SUB frame addressed to `recipient`.
pub fn encode_addressed<T: Serialize + ?Sized>(
    recipient: &[u8],
    value: &T,
    format: Format,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(recipient.len() + 128);
    out.extend_from_slice(recipient);
    out.push(b' ');
    encode_into(value, format, &mut out)?;
    Ok(out)
}
