//! MessagePack codec (rmp-serde) with the same surface as the TNetString one.
//!
//! Maps are written with field names (not positional arrays) so that a reader
//! with a newer or older model still finds the fields it knows.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why MessagePack could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not valid MessagePack for the expected shape.
    #[error("invalid MessagePack: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The value could not be written.
    #[error("cannot encode as MessagePack: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// Bytes follow the value where the frame should have ended.
    #[error("{extra} unexpected bytes after the value")]
    Trailing {
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Decodes one complete value that must fill `input` exactly.
pub fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, Error> {
    let mut cursor = std::io::Cursor::new(input);
    let value = T::deserialize(&mut rmp_serde::Deserializer::new(&mut cursor))?;
    let used = usize::try_from(cursor.position()).unwrap_or(input.len());
    if used != input.len() {
        return Err(Error::Trailing {
            extra: input.len() - used,
        });
    }
    Ok(value)
}

/// Encodes `value` as a MessagePack map keyed by field name.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    Ok(rmp_serde::to_vec_named(value)?)
}
