//! The configuration Holdfast runs with when no file is given: Pushpin's
//! defaults for every key Holdfast honours, and Pushpin's default route.

/// Built-in `pushpin.conf` equivalent. A file given with `--config` is read
/// on top of it, so any key it leaves out keeps the value here.
pub const DEFAULT_CONFIG: &str = r#"
[global]
# rundir: folder for the ZeroMQ ipc sockets (default: <tmp>/holdfast-<http port>)
ipc_prefix=pushpin-
port_offset=0

[runner]
http_port=7999
https_ports=
log_level=2
client_buffer_size=8192
client_maxconn=50000
# Holdfast additions: request body limit (bytes) and idle keep-alive timeout (seconds)
client_max_body_size=10485760
client_idle_timeout=60
# Holdfast additions: permessage-deflate for WebSocket clients that offer it
# (condure's --compression; Pushpin 1.36 never enables it), and the largest
# WebSocket message accepted from a client (bytes; larger ones: close 1009)
allow_compression=false
client_max_message_size=1048576
# Holdfast addition: seconds each process drains after SIGTERM (held
# clients get a clean end at once; requests in flight may finish this long)
shutdown_grace=5
# Holdfast additions: how many connection manager and proxy processes to run
# (connections are spread over the connmgrs by the kernel, SO_REUSEPORT;
# requests over the proxies; client_maxconn is shared among the connmgrs)
connmgr_count=1
proxy_count=1
# Holdfast addition: the connection manager program (default: holdfast-connmgr
# beside the runner). Pushpin's condure (or pushpin-connmgr) works in its
# place, with condure's command line, during a migration (docs/MIGRATING.md)
connmgr_bin=
# Holdfast addition: where holdfast-connmgr, -proxy and -handler are looked
# for when they are not beside the holdfast program (then on PATH)
libexec_dir=/usr/libexec/holdfast

[proxy]
routesfile=routes
debug=false
# the SockJS client library the page of SockJS's iframe transports loads
sockjs_url=http://cdn.jsdelivr.net/sockjs/0.3.4/sockjs.min.js
# CORS headers (and JSON-P) for every route, as the route option aco
auto_cross_origin=false
# with the route option orig_headers: client headers the origin only gets
# as the client sent them already marked (eb9bf0f5-<name>), comma-separated
orig_headers_need_mark=
accept_x_forwarded_protocol=false
set_x_forwarded_protocol=proto-only
x_forwarded_for=
x_forwarded_for_trusted=
sig_iss=pushpin
sig_key=changeme
upstream_key=
# Holdfast addition: bytes the edge cache (routes with the `cache` option)
# may hold; least recently used answers go first
cache_size=67108864

[handler]
push_in_spec=tcp://127.0.0.1:5560
push_in_sub_specs=tcp://127.0.0.1:5562
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=5561
command_spec=tcp://127.0.0.1:5563
stats_spec=ipc://{rundir}/{ipc_prefix}stats
update_on_first_subscription=true
# largest HTTP publish body, bytes
push_in_http_max_body_size=1000000
# publishes (an HTTP request's items, or one ZeroMQ message) that may wait
# for delivery; when full, publishers wait: nothing is dropped (Pushpin
# counts deliveries here and drops past it)
message_hwm=1024
# how long an item whose prev-id is ahead waits for its predecessor, ms
message_wait=5000
# how long a published item id is remembered to drop duplicates, s (0: off)
id_cache_ttl=60
# channels one connection may subscribe to; more are ignored
connection_subscription_max=20
# how long a channel stays subscribed after its last long-poll left, s
subscription_linger=60
# Holdfast additions, purge + publish: where items' `purge` goes (self = the
# edge cache; a Varnish URL such as http://127.0.0.1:6081; fastly:<service
# id>), the pacing window per channel, and the Fastly API
purge_targets=self
purge_window_ms=1000
fastly_api_url=https://api.fastly.com
fastly_api_token=
# Holdfast addition: publish API Bearer tokens may be this many seconds past
# `exp` or before `nbf` (clock skew)
push_in_http_jwt_leeway=5
# Holdfast additions, channel history: items kept per channel (0: none), how
# long, and for how many channels (least recently published forgotten
# first). A client coming back with where it was (a prev-id from the
# origin, an SSE Last-Event-ID) gets what it missed from here, without the
# origin being asked; only items with an id are kept
history_size=0
history_ttl=600
history_channels=10000
# Holdfast addition, the bus between instances: comma-separated NATS server
# URLs (nats://host:4222, tls://...; user:password@ allowed). Empty: no bus,
# this instance delivers what its own inputs accept (and the SUB input's).
# With it, every publish goes through NATS to every instance's subscribers.
bus_url=
# subjects are <prefix>.ch.<channel> (channel bytes other than letters,
# digits, _ and - written %XX)
bus_subject_prefix=holdfast
# with channel history on (history_size > 0) the bus keeps items in a
# JetStream stream (named after the prefix: HOLDFAST), publishes are
# answered once it acknowledged them, and each channel is read through an
# ordered consumer that resumes where it was after a server goes away;
# copies kept: 1, or 3 or 5 in a cluster
bus_history_replicas=1
# NATS credentials: a .creds file, or a token; TLS: CA file, client cert/key
bus_credentials_file=
bus_token=
bus_tls_ca_file=
bus_tls_cert_file=
bus_tls_key_file=
"#;

/// The route used when there is no routes file (Pushpin ships the same).
pub const DEFAULT_ROUTE: &str = "* 127.0.0.1:80";
