//! See the crate docs.

pub mod binaries;
pub mod browser;
pub mod client;
pub mod holdfast;
pub mod nats;
pub mod nginx;
pub mod origin;
pub mod ports;
pub mod pushpin;
pub mod python;
pub mod scratch;
pub mod scripted;
pub mod varnish;
pub mod ws_origin;
