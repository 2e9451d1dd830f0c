//! The live SockJS sessions, by route and session id: for each, the
//! frames waiting for its client and its client's messages for the
//! origin, shared by the transports (the client's connections) and the
//! task that stands for the client toward the origin ([`super::peer`]).
//! The locks are never held across an await.

use super::frames::Frame;
use crate::routes::Route;
use holdfast_protocol::zhttp::Header;
use holdfast_runtime::body::Drained;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// Client messages that may wait for the origin (each `xhr_send` waits
/// for room).
const INCOMING: usize = 64;

/// Where the session stands with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Opening {
    /// Waiting for the origin's answer.
    Pending,
    /// Open; the `o` frame not yet given to a client.
    Open,
    /// Open, `o` given.
    Announced,
}

#[derive(Debug)]
pub(super) struct State {
    pub opening: Opening,
    pub queue: VecDeque<String>,
    pub closed: Option<(u16, String)>,
    receiving: bool,
    /// Since when no receiving connection is attached.
    pub idle_since: Option<Instant>,
}

/// A session's frames and its client's messages, shared by the transports
/// and the task.
pub struct SockSession {
    state: Mutex<State>,
    /// Woken when a receiver comes or goes, frames arrive, or it closes.
    pub(super) changed: Notify,
    incoming: mpsc::Sender<Vec<String>>,
    /// Message bytes the client has taken: credits back to the origin side.
    pub(super) drained: Arc<Drained>,
}

impl SockSession {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes this connection the session's receiver; `false` when another
    /// one is attached (the caller answers `c[2010, ...]`).
    pub fn attach(&self) -> bool {
        let mut state = self.lock();
        if state.receiving {
            return false;
        }
        state.receiving = true;
        state.idle_since = None;
        true
    }

    /// The receiving connection ended.
    pub fn detach(&self) {
        let mut state = self.lock();
        state.receiving = false;
        state.idle_since = Some(Instant::now());
        drop(state);
        self.changed.notify_waiters();
    }

    /// The next frame for the client, once there is one: `o` first, then
    /// queued messages (all of them), then the close.
    pub async fn next_frame(&self) -> Frame {
        loop {
            // Registered before looking, so a change in between wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(frame) = self.take_frame() {
                return frame;
            }
            changed.await;
        }
    }

    fn take_frame(&self) -> Option<Frame> {
        let mut state = self.lock();
        match state.opening {
            Opening::Open => {
                state.opening = Opening::Announced;
                return Some(Frame::Open);
            }
            Opening::Pending if state.closed.is_none() => return None,
            _ => {}
        }
        if !state.queue.is_empty() {
            let messages: Vec<String> = state.queue.drain(..).collect();
            let bytes = messages.iter().map(String::len).sum();
            drop(state);
            self.drained.add(bytes);
            return Some(Frame::Messages(messages));
        }
        state
            .closed
            .as_ref()
            .map(|(code, reason)| Frame::Close(*code, reason.clone()))
    }

    /// The session's close, if it is over.
    pub fn close_frame(&self) -> Option<Frame> {
        let state = self.lock();
        state
            .closed
            .as_ref()
            .map(|(code, reason)| Frame::Close(*code, reason.clone()))
    }

    /// Passes the client's messages on; waits while too many wait. `false`
    /// when the session is over.
    pub async fn send(&self, messages: Vec<String>) -> bool {
        if self.lock().closed.is_some() {
            return false;
        }
        self.incoming.send(messages).await.is_ok()
    }

    /// Ends the session from the client's side (its WebSocket closed).
    pub fn close_by_client(&self) {
        self.close(1000, "Client closed");
    }

    /// Ends the session (with this close frame, unless it had one).
    pub(super) fn close(&self, code: u16, reason: &str) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some((code, reason.to_owned()));
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

/// The live SockJS sessions, by route and session id.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<SockSession>>>,
    next: AtomicU64,
}

/// What a session's origin side is opened with: the client's first
/// request, as the origin sees a WebSocket handshake.
pub struct Opener {
    /// The route (its targets, GRIP and signing settings).
    pub route: Route,
    /// `ws://` or `wss://` URI at `sockjs_as_path`.
    pub uri: String,
    /// The client's headers.
    pub headers: Vec<Header>,
    /// The client's address.
    pub peer: Option<String>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<SockSession>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session `key`, if it lives.
    pub fn get(&self, key: &str) -> Option<Arc<SockSession>> {
        self.lock().get(key).cloned()
    }

    /// The session `key`, and, when it is new (made here), the receiver of
    /// its client's messages, for the task that starts it.
    pub fn get_or_insert(
        &self,
        key: &str,
    ) -> (Arc<SockSession>, Option<mpsc::Receiver<Vec<String>>>, u64) {
        let mut sessions = self.lock();
        if let Some(session) = sessions.get(key) {
            return (session.clone(), None, 0);
        }
        let (incoming, incoming_rx) = mpsc::channel(INCOMING);
        let session = Arc::new(SockSession {
            state: Mutex::new(State {
                opening: Opening::Pending,
                queue: VecDeque::new(),
                closed: None,
                receiving: false,
                idle_since: Some(Instant::now()),
            }),
            changed: Notify::new(),
            incoming,
            drained: Arc::new(Drained::default()),
        });
        sessions.insert(key.to_owned(), session.clone());
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (session, Some(incoming_rx), n)
    }

    /// Forgets the session `key` (its task ended).
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}
