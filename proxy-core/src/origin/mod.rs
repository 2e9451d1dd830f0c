//! Everything about talking to origins that is the proxy's own: the
//! headers it adds or removes, answer bodies (live or cached), a route
//! target's address, and sending a request to a route's targets
//! ([`forward`]). (The pooled client and `Grip-Sig` are
//! `holdfast_grip`'s, shared with the handler.)

pub mod body;
pub(crate) mod forward;
pub mod headers;
pub mod jsonp;

use crate::routes::Target;

/// The URI prefix (`scheme://host:port`) for a target.
pub fn target_base(target: &Target) -> String {
    let scheme = if target.ssl { "https" } else { "http" };
    if target.host.contains(':') {
        format!("{scheme}://[{}]:{}", target.host, target.port)
    } else {
        format!("{scheme}://{}:{}", target.host, target.port)
    }
}
