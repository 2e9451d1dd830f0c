//! Every limit connmgr enforces, in one place, with the reason for its value.

use std::time::Duration;

/// Longest request URI accepted (Pushpin's connection manager uses the same);
/// longer ones get 414.
pub const MAX_URI_LEN: usize = 4096;

/// Most request headers accepted (as Pushpin); more get 431.
pub const MAX_HEADERS: usize = 64;

/// Read buffer hyper may grow to while streaming a body. Larger than the
/// header limit so body reads are not chopped into tiny pieces.
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// How long a ZHTTP session may go without any packet from the proxy before
/// it is considered dead (Pushpin's `ZHTTP_SESSION_TIMEOUT`).
pub const SESSION_EXPIRY: Duration = Duration::from_secs(60);

/// How often a session sends a keep-alive to the proxy. Under
/// [`SESSION_EXPIRY`] with margin for a busy peer (Pushpin uses 45 s).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(45);

/// Response body chunks handed to hyper but not yet written; the bytes are
/// bounded by the credits granted, this bounds the count.
pub const BODY_QUEUE: usize = 64;

/// How long a refused connection (over `client_maxconn`) is given to read
/// its 503 before the socket closes.
pub const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// After an early error answer (413), how much of the rest of the request
/// body is read and discarded so the client sees the answer, not a reset.
pub const DRAIN_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// And for how long at most.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);
