//! `PURGE` on a route with `cache`, from this machine: removes a URL, or
//! the objects tagged with the `Surrogate-Key`s it names (or `xkey-purge`,
//! as for Varnish); with `Fastly-Soft-Purge: 1` (or `xkey-softpurge`) it
//! marks them stale instead.

use super::flow::key_of;
use super::store::request_value;
use crate::prepare::Prepared;
use crate::shared::Shared;

/// Whether this request is a purge of the edge cache (a `PURGE` on a
/// `cache` route).
pub(crate) fn is_purge(prepared: &Prepared) -> bool {
    prepared.route.cache && prepared.method.as_str() == "PURGE"
}

/// Purges what a `PURGE` names: `Surrogate-Key: <keys>` (or `xkey-purge`,
/// as for Varnish), else the URL. Only from this machine. The status and
/// text for the client.
pub(crate) fn purge(shared: &Shared, prepared: &Prepared) -> (u16, String) {
    let local = prepared
        .peer
        .as_deref()
        .and_then(|p| p.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    if !local {
        let peer = prepared.peer.as_deref().unwrap_or("an unknown address");
        return (403, format!("Purging is not allowed from {peer}.\n"));
    }
    let soft = request_value(&prepared.headers, "fastly-soft-purge")
        .is_some_and(|v| &v[..] == b"1")
        || request_value(&prepared.headers, "xkey-softpurge").is_some();
    let keys: Vec<String> = ["surrogate-key", "xkey-purge", "xkey-softpurge"]
        .iter()
        .filter_map(|name| request_value(&prepared.headers, name))
        .flat_map(|v| {
            String::from_utf8_lossy(&v)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let purged = if keys.is_empty() {
        shared.cache.purge_url(&key_of(prepared), soft)
    } else {
        shared.cache.purge_keys(&keys, soft)
    };
    tracing::info!(purged, keys = ?keys, soft, path = %prepared.path, "edge cache purge");
    (200, format!("Purged {purged} objects.\n"))
}
