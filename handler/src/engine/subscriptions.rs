//! The channel index: which sessions each channel has, the channels whose
//! subscription lingers after their last long-poll left, and the
//! subscription changes for those who follow local interest (the SUB
//! publish input, the bus).

use holdfast_protocol::zmq::Multipart;

/// The XSUB message that subscribes to (or unsubscribes from) `channel`:
/// what followers of local interest are sent.
pub fn interest_message(channel: &str, subscribe: bool) -> Multipart {
    let mut frame = vec![u8::from(subscribe)];
    frame.extend_from_slice(channel.as_bytes());
    vec![frame]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_messages() {
        assert_eq!(interest_message("ab", true), vec![vec![1, b'a', b'b']]);
        assert_eq!(interest_message("ab", false), vec![vec![0, b'a', b'b']]);
    }
}
