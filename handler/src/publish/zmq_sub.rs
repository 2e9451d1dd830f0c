//! The ZeroMQ SUB publish input: two frames, the channel then the item
//! (`J` + JSON, `T` + TNetString or bare TNetString), as Pushpin's. The
//! socket is an XSUB so that subscriptions can follow local interest: a
//! channel is subscribed when its first session arrives and unsubscribed
//! when its last one leaves, which an XPUB publisher or broker can see.

use super::zmq_pull::StartError;
use crate::engine::Input;
use crate::error::ItemError;
use holdfast_protocol::publish::parse_item_frame;
use holdfast_protocol::publish::Item;
use holdfast_protocol::zmq::{apply_specs, spawn, Multipart};
use tokio::sync::mpsc;

/// Binds (or connects, with `connect`) the socket and forwards items to the
/// engine; returns the sender the engine uses to change subscriptions.
pub fn start(
    ctx: &zmq::Context,
    specs: &str,
    connect: bool,
    items: mpsc::Sender<Input>,
) -> Result<mpsc::Sender<Multipart>, StartError> {
    let socket = holdfast_protocol::zmq::new_socket(ctx, zmq::XSUB)?;
    socket.set_rcvhwm(101_000)?;
    if connect {
        // Notice dead brokers (TCP keep-alive idle 30 s, 6 probes 5 s apart, as Pushpin).
        socket.set_tcp_keepalive(1)?;
        socket.set_tcp_keepalive_idle(30)?;
        socket.set_tcp_keepalive_cnt(6)?;
        socket.set_tcp_keepalive_intvl(5)?;
    }
    apply_specs(&socket, specs, !connect)?;
    let mut handle = spawn(socket, "publish-sub")?;
    tokio::spawn(async move {
        while let Some(msg) = handle.rx.recv().await {
            match parse_message(&msg) {
                Ok(item) => {
                    if items.send(Input::Items(vec![item])).await.is_err() {
                        return;
                    }
                }
                Err(err) => tracing::warn!("publish message dropped: {err}"),
            }
        }
    });
    Ok(handle.tx)
}

/// `[channel, item]`: the channel frame names the channel.
pub fn parse_message(msg: &Multipart) -> Result<Item, ItemError> {
    let [channel, payload] = msg.as_slice() else {
        return Err(ItemError::Frames { got: msg.len() });
    };
    let channel = std::str::from_utf8(channel).map_err(|_| ItemError::ChannelNotUtf8)?;
    Ok(parse_item_frame(payload, Some(channel))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let item = parse_message(&vec![
            b"news".to_vec(),
            br#"J{"http-stream":{"content":"x"}}"#.to_vec(),
        ])
        .unwrap();
        assert_eq!(item.channel, "news");
        let item = parse_message(&vec![
            b"news".to_vec(),
            b"T32:11:http-stream,13:7:content,0:,}}".to_vec(),
        ])
        .unwrap();
        assert_eq!(item.channel, "news");
        assert!(parse_message(&vec![b"only-one".to_vec()]).is_err());
        assert!(parse_message(&vec![vec![0xff], b"J{}".to_vec()]).is_err());
        assert!(parse_message(&vec![b"c".to_vec(), b"J{".to_vec()]).is_err());
    }
}
