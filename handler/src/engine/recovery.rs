//! Recovery: asking the origin again for a session that may have missed
//! something (a long-poll with `Grip-Last`, a stream's next link), what
//! its answer does, and smoothed updates of many sessions.

use super::Engine;
use crate::error::OriginError;
use crate::fetch::{Fetched, Purpose, Reply};
use crate::session::{Ask, NotAsked, SessionTimer, Source};
use bytes::Bytes;
use holdfast_protocol::handoff::{HoldMode, Response};
use holdfast_protocol::zhttp::Header;
use std::time::Duration;

/// Attempts at a next link before the stream is ended; the wait doubles
/// from one second between them.
const LINK_ATTEMPTS: u32 = 5;

impl Engine {
    /// Asks the origin again for a session: a long-poll replays its
    /// request with `Grip-Last`, a stream fetches its next link. Does
    /// nothing while a request is in flight, or when there is no way to ask
    /// (a stream without a next link, a proxy that gave no origin).
    pub(super) fn recover(&mut self, key: &str, urgent: bool) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        match session.begin_ask() {
            Ok((ask, replaced)) => {
                if let Some(timer) = replaced {
                    self.timers.cancel(&timer);
                }
                match ask {
                    Ask::Retry {
                        origin,
                        request,
                        last,
                        generation,
                    } => {
                        tracing::debug!(session = %key, urgent, ?last, "long-poll asked again");
                        self.fetcher.retry(key, generation, origin, request, &last);
                    }
                    Ask::Link {
                        origin,
                        link,
                        last,
                        generation,
                    } => {
                        tracing::debug!(session = %key, urgent, %link, ?last, "next link fetched");
                        self.fetcher.link(key, generation, origin, link, &last);
                    }
                }
            }
            Err(NotAsked::NoNextLink) => {
                tracing::debug!(session = %key, "stream has no next link to recover with");
            }
            Err(NotAsked::Busy | NotAsked::NoOrigin) => {}
        }
    }

    /// `recover`: every channel's last id is forgotten and every session
    /// updated, smoothed.
    pub(super) fn recover_all(&mut self) {
        self.sequencer.clear_last_id(None);
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        tracing::info!(sessions = keys.len(), "recover: updating every session");
        self.timers.queue_updates(keys);
    }

    /// The origin's answer to a session's request.
    pub(super) async fn on_fetched(&mut self, done: Fetched) {
        let Some(session) = self.sessions.get_mut(&done.key) else {
            return;
        };
        // A stale answer, or one for a session that is ending meanwhile
        // (closed by a publish): nothing to do.
        if !session.take_answer(done.generation) {
            return;
        }
        let key = done.key;
        match (done.purpose, done.result) {
            (Purpose::Retry, Ok(Reply::Hold { hold, response })) => {
                self.install(&key, *hold, response, Source::Retry).await;
            }
            (Purpose::Retry, Ok(Reply::Complete(response))) => {
                self.respond(&key, response).await;
            }
            (Purpose::Retry, Err(err)) => {
                tracing::warn!(session = %key, "asking the origin again failed: {err}");
                self.respond(&key, error_response()).await;
            }
            (Purpose::Link, answer) => self.link_answered(&key, answer).await,
        }
    }

    /// A next link's answer: the next page's instructions, the stream's
    /// last page, its end on an error status, or another try after a
    /// failure (up to [`LINK_ATTEMPTS`], waiting longer each time).
    async fn link_answered(&mut self, key: &str, answer: Result<Reply, OriginError>) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        match answer {
            Ok(Reply::Hold { hold, response })
                if hold.mode == HoldMode::Stream && (200..300).contains(&response.code) =>
            {
                self.install(key, *hold, response, Source::Link).await;
            }
            Ok(Reply::Complete(response)) if (200..300).contains(&response.code) => {
                // A page with neither hold nor link: the stream is complete.
                session.complete_stream(response.body);
                self.flush(key).await;
            }
            Ok(_) => {
                tracing::info!(session = %key, "next link answered with an error status or a long-poll hold; stream ended");
                session.close();
                self.flush(key).await;
            }
            Err(err) => {
                let failures = session.link_failed();
                if failures >= LINK_ATTEMPTS {
                    tracing::warn!(session = %key, "next link failed {LINK_ATTEMPTS} times ({err}); stream ended");
                    session.close();
                    self.flush(key).await;
                    return;
                }
                let wait = Duration::from_secs(1 << (failures - 1)) + jitter();
                tracing::info!(session = %key, "next link failed ({err}); trying again in {}ms", wait.as_millis());
                self.timers.arm(
                    session.timer(SessionTimer::Next),
                    key,
                    SessionTimer::Next,
                    wait,
                );
            }
        }
    }
}

/// What a long-poll client gets when the origin cannot be asked again
/// (as for a first request: 502).
fn error_response() -> Response {
    let body = Bytes::from_static(b"Error while proxying to origin.\n");
    Response {
        code: 502,
        reason: "Bad Gateway".into(),
        headers: vec![
            Header("Content-Type".into(), Bytes::from_static(b"text/plain")),
            Header("Content-Length".into(), Bytes::from(body.len().to_string())),
        ],
        body,
    }
}

/// Up to a second, so that sessions failing together do not retry together.
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos % 1000))
}
