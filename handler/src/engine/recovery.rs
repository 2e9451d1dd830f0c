//! Recovery: asking the origin again for a session that may have missed
//! something (a long-poll with `Grip-Last`, a stream's next link), what
//! its answer does, and smoothed updates of many sessions.

use super::*;

/// Smoothed updates (recover command, first subscriptions): this many
/// sessions every [`UPDATE_INTERVAL`], Pushpin's 10 actions of 100 a second.
pub(super) const UPDATE_BATCH: usize = 100;

pub(super) const UPDATE_INTERVAL: Duration = Duration::from_millis(100);

/// Attempts at a next link before the stream is ended; the wait doubles
/// from one second between them.
pub(super) const LINK_ATTEMPTS: u32 = 5;

impl Engine {
    /// Asks the origin again for a session: a long-poll replays its
    /// request with `Grip-Last`, a stream fetches its next link. Does
    /// nothing while a request is in flight, or when there is no way to ask
    /// (a stream without a next link, a proxy that gave no origin).
    pub(super) fn recover(&mut self, key: &str, urgent: bool) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if session.phase.asking() || session.phase.closing() {
            return;
        }
        let Some(origin) = &session.origin else {
            return;
        };
        let last = session.last_ids();
        match session.mode {
            HoldMode::Response => {
                session.generation += 1;
                session.phase = session.phase.ask();
                if let Some(timer) = session.hold_timer.take() {
                    self.timers.try_remove(&timer);
                }
                tracing::debug!(session = %key, urgent, ?last, "long-poll asked again");
                self.fetcher
                    .retry(key, session.generation, origin, &session.request, &last);
            }
            HoldMode::Stream => {
                let Some((link, _)) = &session.next_link else {
                    tracing::debug!(session = %key, "stream has no next link to recover with");
                    return;
                };
                session.generation += 1;
                session.phase = session.phase.ask();
                if let Some(timer) = session.next_timer.take() {
                    self.timers.try_remove(&timer);
                }
                tracing::debug!(session = %key, urgent, %link, ?last, "next link fetched");
                self.fetcher
                    .link(key, session.generation, origin, link, &last);
            }
        }
    }

    /// `recover`: every channel's last id is forgotten and every session
    /// updated, smoothed.
    pub(super) fn recover_all(&mut self) {
        self.sequencer.clear_last_id(None);
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        tracing::info!(sessions = keys.len(), "recover: updating every session");
        self.queue_updates(keys);
    }

    pub(super) fn queue_updates(&mut self, keys: Vec<String>) {
        self.updates.extend(keys);
        if !self.updates_armed && !self.updates.is_empty() {
            self.updates_armed = true;
            self.timers
                .insert((String::new(), Timer::Updates), Duration::ZERO);
        }
    }

    pub(super) async fn on_fetched(&mut self, done: Fetched) {
        let Some(session) = self.sessions.get_mut(&done.key) else {
            return;
        };
        // A stale answer, or one for a session that is ending meanwhile
        // (closed by a publish): nothing to do.
        if session.generation != done.generation || !session.phase.asking() {
            return;
        }
        session.phase = session.phase.answered();
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
            (Purpose::Link, Ok(Reply::Hold { hold, response }))
                if hold.mode == HoldMode::Stream && (200..300).contains(&response.code) =>
            {
                self.install(&key, *hold, response, Source::Link).await;
            }
            (Purpose::Link, Ok(Reply::Complete(response)))
                if (200..300).contains(&response.code) =>
            {
                // A page with neither hold nor link: the stream is complete.
                session.next_link = None;
                if !response.body.is_empty() {
                    session.queue.push_back(response.body);
                }
                session.phase = Phase::Closing;
                self.flush(&key).await;
            }
            (Purpose::Link, Ok(_)) => {
                tracing::info!(session = %key, "next link answered with an error status or a long-poll hold; stream ended");
                session.phase = Phase::Closing;
                self.flush(&key).await;
            }
            (Purpose::Link, Err(err)) => {
                session.link_failures += 1;
                if session.link_failures >= LINK_ATTEMPTS {
                    tracing::warn!(session = %key, "next link failed {LINK_ATTEMPTS} times ({err}); stream ended");
                    session.phase = Phase::Closing;
                    self.flush(&key).await;
                    return;
                }
                let wait = Duration::from_secs(1 << (session.link_failures - 1)) + jitter();
                tracing::info!(session = %key, "next link failed ({err}); trying again in {}ms", wait.as_millis());
                session.next_timer = Some(
                    self.timers
                        .insert((key.clone(), Timer::Session(SessionTimer::Next)), wait),
                );
            }
        }
    }
}

/// What a long-poll client gets when the origin cannot be asked again
/// (as for a first request: 502).
pub(super) fn error_response() -> Response {
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
pub(super) fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos % 1000))
}
