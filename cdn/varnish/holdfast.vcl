vcl 4.1;
# Varnish as the caching CDN behind Holdfast:
#
#     clients -> Holdfast -> Varnish -> origin
#
# Varnish caches the origin's answers, GRIP instructions (Grip-Hold,
# Grip-Channel, ...) included, so new clients subscribe without reaching
# the origin, and keep working while it is down. Purging: `PURGE <url>`
# (every variant of the URL), or `PURGE` with `xkey-purge: <keys>` (or
# `xkey-softpurge`) for the objects tagged with those `Surrogate-Key`s.
#
# Set the backend to your origin. The tests start varnishd with this file,
# the port below replaced by their origin's.

import std;
import xkey;

backend origin {
    .host = "127.0.0.1";
    .port = "8080";
}

# Who may purge: Holdfast's handler, on this machine.
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Purging is not allowed from " + client.ip + "."));
        }
        if (req.http.xkey-purge) {
            return (synth(200, "Purged " + xkey.purge(req.http.xkey-purge) + " objects."));
        }
        if (req.http.xkey-softpurge) {
            return (synth(200, "Soft-purged " + xkey.softpurge(req.http.xkey-softpurge) + " objects."));
        }
        return (purge);
    }
    # A GRIP origin answers with instructions only to requests Holdfast
    # signed (Grip-Sig), and the cache would hand those answers to anyone:
    # requests that did not come through Holdfast are never served from,
    # nor stored in, the cache. (The signature changes with every request;
    # it is not part of the cache key, which is the URL, Host and Vary.)
    # Keep Varnish reachable from Holdfast only: this check cannot verify
    # the signature.
    if (!req.http.Grip-Sig) {
        return (pass);
    }
    # The signature is the only credential Holdfast adds; client cookies
    # still make a request personal and uncached (Varnish's built-in rule).
}

sub vcl_backend_response {
    # A background refresh of a stale object that fails keeps the stale
    # object serving (what grace is for): the error answer is given up
    # rather than stored over it.
    if (bereq.is_bgfetch && beresp.status >= 500) {
        return (abandon);
    }
    # Surrogate-Control is for caches like this one (Fastly honours it; it
    # wins over Cache-Control).
    if (beresp.http.Surrogate-Control ~ "max-age=[0-9]+") {
        set beresp.ttl = std.duration(
            regsub(beresp.http.Surrogate-Control, "^.*max-age=([0-9]+).*$", "\1") + "s", 0s);
        set beresp.uncacheable = false;
    }
    # Surrogate-Key tags the object for xkey purges.
    if (beresp.http.Surrogate-Key) {
        set beresp.http.xkey = beresp.http.Surrogate-Key;
    }
    # Serve a stale object for up to an hour while the origin is down.
    set beresp.grace = 1h;
}

sub vcl_deliver {
    # Meant for this cache, as on Fastly: not passed on.
    unset resp.http.xkey;
    unset resp.http.Surrogate-Key;
    unset resp.http.Surrogate-Control;
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
