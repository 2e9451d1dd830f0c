//! Everything about talking to origins: the pooled client, request signing,
//! and the headers the proxy adds or removes.

pub mod client;
pub mod headers;
pub mod sign;
