//! The edge cache, for routes with the `cache` option: origin answers,
//! GRIP instructions included, stored per `Surrogate-Control` /
//! `Cache-Control` and keyed by URL, `Host` and `Vary`, so new clients are
//! held without asking the origin, and still while it is down.
//!
//! - [`policy`]: what may be stored and for how long.
//! - [`store`]: the objects (LRU by bytes), purges, request collapsing.
//!
//! How a request uses it is in `session::cached`.

pub mod policy;
pub mod store;

pub use store::{Cache, Key, Lookup, Stats, Stored};
