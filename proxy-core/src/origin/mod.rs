//! Everything about talking to origins: the pooled client, request signing,
//! the headers the proxy adds or removes, and answer bodies (live or
//! cached).

pub mod body;
pub mod client;
pub mod headers;
pub mod sign;
