//! The edge cache, for routes with the `cache` option: origin answers,
//! GRIP instructions included, stored per `Surrogate-Control` /
//! `Cache-Control` and keyed by URL, `Host` and `Vary`, so new clients are
//! held without asking the origin, and still while it is down. A request
//! the cache [`applies`] to goes through [`serve`], its whole flow here.
//!
//! - [`flow`]: a request's way through the cache, to its answer.
//! - [`decide`]: what to do with a request, given what the cache holds.
//! - [`answer`]: stored answers as clients get them, and revalidation.
//! - [`purge`]: `PURGE` requests.
//! - [`policy`]: what may be stored and for how long.
//! - [`store`]: the objects (LRU by bytes), purges, request collapsing.

mod answer;
mod decide;
mod flow;
pub mod policy;
mod purge;
pub mod store;

pub(crate) use flow::{applies, serve};
pub(crate) use purge::{is_purge, purge};
pub use store::{Cache, Key, Lookup, Stats, Stored};
