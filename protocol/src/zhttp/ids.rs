//! The `id` field: one session id, or a batch of `{id, seq}` for multi-id
//! packets (keep-alive and cancel sent to many sessions at once).

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// One entry of a multi-id packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdSeq {
    /// Session id.
    pub id: String,
    /// That session's sequence number for this packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
}

/// The `id` of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ids {
    /// A single session.
    One(String),
    /// Several sessions, each with its own sequence number.
    Many(Vec<IdSeq>),
}

impl Ids {
    /// Every `(id, seq)` the packet is for; `default_seq` is the packet's own
    /// `seq`, used for the single-id form.
    pub fn each(&self, default_seq: Option<u32>) -> Vec<(&str, Option<u32>)> {
        match self {
            Ids::One(id) => vec![(id.as_str(), default_seq)],
            Ids::Many(list) => list.iter().map(|e| (e.id.as_str(), e.seq)).collect(),
        }
    }
}

impl Serialize for Ids {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ids::One(id) => s.serialize_str(id),
            Ids::Many(list) => list.serialize(s),
        }
    }
}

struct IdsVisitor;

impl<'de> Visitor<'de> for IdsVisitor {
    type Value = Ids;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a session id or a list of {id, seq}")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ids, E> {
        Ok(Ids::One(v.to_owned()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Ids, E> {
        std::str::from_utf8(v)
            .map(|s| Ids::One(s.to_owned()))
            .map_err(|_| E::invalid_value(de::Unexpected::Bytes(v), &"a UTF-8 session id"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ids, A::Error> {
        let mut list = Vec::new();
        while let Some(entry) = seq.next_element::<IdSeq>()? {
            if list.len() == super::MAX_BATCH_IDS {
                return Err(de::Error::custom(format_args!(
                    "more than {} ids in one packet",
                    super::MAX_BATCH_IDS
                )));
            }
            list.push(entry);
        }
        Ok(Ids::Many(list))
    }
}

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdsVisitor)
    }
}
