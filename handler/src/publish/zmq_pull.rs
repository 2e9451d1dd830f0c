//! The ZeroMQ PULL publish input: one frame is one item, `J` + JSON,
//! `T` + TNetString, or a bare TNetString. Bad frames are logged and
//! dropped (there is nobody to answer).

use super::Sink;
use holdfast_protocol::publish::{parse_item_frame, Item, PublishError};
use holdfast_protocol::zmq::{apply_specs, spawn, SpecError};

/// Parses one frame into an item.
pub fn parse_frame(frame: &[u8]) -> Result<Item, PublishError> {
    parse_item_frame(frame, None)
}

/// Binds the PULL socket and forwards items to the engine (or the bus).
pub fn start(ctx: &zmq::Context, spec: &str, items: Sink) -> Result<(), StartError> {
    let socket = holdfast_protocol::zmq::new_socket(ctx, zmq::PULL)?;
    // Pushpin's publish HWM: bursts this deep wait in libzmq, not in memory here.
    socket.set_rcvhwm(101_000)?;
    apply_specs(&socket, spec, true)?;
    let mut handle = spawn(socket, "publish-pull")?;
    drop(handle.tx);
    tokio::spawn(async move {
        while let Some(msg) = handle.rx.recv().await {
            let Some(frame) = msg.first() else { continue };
            match parse_frame(frame) {
                Ok(item) => {
                    if items.publish_patiently(vec![item]).await.is_err() {
                        return;
                    }
                }
                Err(err) => tracing::warn!("publish frame dropped: {err}"),
            }
        }
    });
    Ok(())
}

/// Why the input could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// libzmq refused.
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    /// Binding failed.
    #[error(transparent)]
    Bind(#[from] SpecError),
    /// The socket could not join the reactor.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_forms() {
        let json = br#"J{"channel":"c","formats":{"http-stream":{"content":"x"}}}"#;
        assert_eq!(parse_frame(json).unwrap().channel, "c");
        let tnet = b"T47:7:channel,1:c,11:http-stream,14:7:content,1:x,}}";
        assert_eq!(parse_frame(tnet).unwrap().channel, "c");
        assert_eq!(parse_frame(&tnet[1..]).unwrap().channel, "c");
        assert!(parse_frame(b"J{").is_err());
        assert!(parse_frame(b"").is_err());
        assert!(parse_frame(br#"J{"formats":{}}"#).is_err());
    }
}
