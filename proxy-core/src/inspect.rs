//! Asks the handler which client session a request belongs to (Pushpin's
//! session feature, routes with `session`): a ZRPC `inspect` call on the
//! handler's inspect socket (DEALER here, ROUTER there). The answer names
//! the session and the last item ids it was sent, which the origin request
//! then carries as `Grip-Session-Id` and `Grip-Last`. A handler that does
//! not answer in time costs the request nothing but those headers.

use bytes::Bytes;
use holdfast_protocol::format::{self, Format};
use holdfast_protocol::inspect::{InspectArgs, InspectReply, InspectRequest, Inspected, METHOD};
use holdfast_protocol::zmq::Multipart;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a request waits for the handler's answer.
const TIMEOUT: Duration = Duration::from_secs(1);

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Option<Inspected>>>>>;

/// The client side of the inspect socket.
pub struct Inspector {
    out: mpsc::Sender<Multipart>,
    pending: Pending,
    next_id: AtomicU64,
    format: Format,
}

impl Inspector {
    /// Connects a DEALER socket to `spec` and reads answers in a task.
    pub fn connect(ctx: &zmq::Context, spec: &str, format: Format) -> anyhow::Result<Inspector> {
        let dealer = holdfast_protocol::zmq::new_socket(ctx, zmq::DEALER)?;
        holdfast_protocol::zmq::apply_specs(&dealer, spec, false)?;
        let mut handle = holdfast_protocol::zmq::spawn(dealer, "handler-inspect")?;
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        tokio::spawn(async move {
            while let Some(msg) = handle.rx.recv().await {
                // [empty delimiter, answer]
                let Some(frame) = msg.last() else { continue };
                match format::decode::<InspectReply>(frame) {
                    Ok(reply) => {
                        let waiter = answers.lock().ok().and_then(|mut p| p.remove(&reply.id));
                        if let Some(waiter) = waiter {
                            if !reply.success {
                                tracing::warn!(condition = ?reply.condition, "handler could not inspect a request");
                            }
                            let _ = waiter.send(reply.value.filter(|_| reply.success));
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "undecodable inspect answer dropped"),
                }
            }
        });
        Ok(Inspector {
            out: handle.tx,
            pending,
            next_id: AtomicU64::new(0),
            format,
        })
    }

    /// The session of a request to `host` `path` with `body`, if the
    /// handler finds one in time.
    pub async fn inspect(&self, host: &str, path: &str, body: Bytes) -> Option<Inspected> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let request = InspectRequest {
            id: id.clone(),
            method: METHOD.into(),
            args: InspectArgs {
                host: host.to_owned(),
                path: path.to_owned(),
                body,
            },
        };
        let frame = match format::encode(&request, self.format) {
            Ok(frame) => frame,
            Err(err) => {
                tracing::warn!(error = %err, "inspect request not encoded");
                return None;
            }
        };
        let (tx, rx) = oneshot::channel();
        self.pending.lock().ok()?.insert(id.clone(), tx);
        let sent = self.out.try_send(vec![Vec::new(), frame]).is_ok();
        let answer = if sent {
            tokio::time::timeout(TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&id);
        }
        if answer.is_none() {
            tracing::warn!(
                "the handler did not answer an inspect request within {TIMEOUT:?}; request sent without its session"
            );
        }
        answer.flatten()
    }
}
