//! Publish items: what a publisher sends to reach subscribers of a channel.
//!
//! The same item arrives on every input (HTTP `/publish/`, ZeroMQ PULL and
//! SUB, the command socket) as JSON or TNetString. Both are read into the
//! [`Value`](crate::value::Value) tree and then into [`Item`], so the checks
//! and the messages are the same everywhere. Formats may sit under
//! `formats` or, as pubcontrol's HTTP publisher sends them, at the item's
//! top level.

mod item;

pub use item::{
    encode_item_frame, parse_item_frame, parse_item_tnetstring, parse_item_value, parse_items_json,
    Action, Format, HttpResponse, HttpStream, Item, PublishError, Purge, WsMessage, WsMessageType,
    MAX_ITEMS, MAX_PURGE,
};
