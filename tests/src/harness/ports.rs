//! Free loopback ports, picked below the kernel's ephemeral range (which
//! starts at 32768 by default): a port handed out by `bind(0)` can be
//! taken by any outgoing connection's local end before the test binds it,
//! one below that range cannot. Each test process walks its own slice of
//! 20000-32000 and checks that nothing listens; ports stay clear of
//! Pushpin's defaults.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const SPAN: u32 = 12_000;

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Start where this process's id says, so concurrent test binaries
    // mostly walk different ports.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        // Steps of 3: ports p+1 and p+2 are sometimes derived (tcp specs).
        let offset = NEXT.fetch_add(3, Ordering::SeqCst) % SPAN;
        let port = (FIRST + offset) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
