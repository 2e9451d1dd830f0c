//! Every limit connmgr enforces, in one place, with the reason for its value.
//! (ZHTTP's own clock, keep-alive, expiry and stall, is
//! `holdfast_protocol::zhttp`'s.)

use std::time::Duration;

/// Longest request URI accepted (Pushpin's connection manager uses the same);
/// longer ones get 414.
pub const MAX_URI_LEN: usize = 4096;

/// Most request headers accepted (as Pushpin); more get 431.
pub const MAX_HEADERS: usize = 64;

/// Read buffer hyper may grow to while streaming a body. Larger than the
/// header limit so body reads are not chopped into tiny pieces.
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// How long a refused connection (over `client_maxconn`) is given to read
/// its 503 before the socket closes.
pub const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// After an early error answer (413), how much of the rest of the request
/// body is read and discarded so the client sees the answer, not a reset.
pub const DRAIN_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// And for how long at most.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);
