//! Free loopback ports. The OS picks an unused port; tests use it right
//! away, and ports above 20000 keep clear of Pushpin's defaults.

use std::net::TcpListener;

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        // Ports p+1 and p+2 are sometimes derived (tcp specs); keep room.
        if port > 20000 && port < 65000 {
            return port;
        }
    }
}
