//! History handed to sessions coming back: the bus's answers to history
//! lookups, and items a session missed replayed to it as a publish would
//! hand them (its queue takes what its credits do not).

use super::Engine;
use crate::history::{Lookup, Since};
use crate::session::Decision;
use holdfast_protocol::publish::Item;
use std::collections::HashSet;

impl Engine {
    /// The bus's answer to a history lookup: what it found is replayed,
    /// then what was published meanwhile (less what the answer had). When
    /// the stream does not reach back, a session whose origin named the
    /// position asks the origin, as it would without history.
    pub(super) async fn on_history(&mut self, lookup: Lookup, found: Since) {
        if self.ws.contains(&lookup.key) {
            let meanwhile = self.ws.end_wait(&lookup.key, &lookup.channel);
            let items = match found {
                Since::Found(items) => after_dedup(items, meanwhile),
                Since::Unknown => meanwhile,
            };
            self.ws_replay(&lookup.key, items).await;
            return;
        }
        let Some(session) = self.sessions.get_mut(&lookup.key) else {
            return;
        };
        let Some((origin_named, meanwhile)) = session.end_history_wait(&lookup.channel) else {
            return;
        };
        let key = lookup.key;
        match found {
            Since::Found(items) => {
                tracing::debug!(session = %key, channel = %lookup.channel, items = items.len(), "history from the bus");
                self.replay(&key, after_dedup(items, meanwhile)).await;
            }
            Since::Unknown if origin_named => {
                tracing::debug!(session = %key, channel = %lookup.channel, "history does not reach back; asking the origin");
                self.sequencer.clear_last_id(Some(&lookup.channel));
                self.recover(&key, true);
            }
            Since::Unknown => self.replay(&key, meanwhile).await,
        }
        self.flush(&key).await;
    }

    /// Hands a session the items it missed, as a publish would (its queue
    /// takes what its credits do not).
    pub(super) async fn replay(&mut self, key: &str, items: Vec<Item>) {
        for item in items {
            let Some(session) = self.sessions.get_mut(key) else {
                return;
            };
            match session.decide(&item) {
                Decision::Skip => {}
                Decision::HoldBack => {
                    session.hold_back(item);
                    continue;
                }
                Decision::Deliver(content) => session.enqueue(content),
                Decision::Respond(response) => {
                    self.respond(key, response).await;
                    return;
                }
                Decision::Close => {
                    session.close();
                    return;
                }
                Decision::Recover => {
                    self.recover(key, true);
                    return;
                }
                Decision::Gap => {
                    self.on_gap(key, &item.channel).await;
                    return;
                }
            }
            self.report.count(|m| &m.history_replayed, 1);
        }
    }

    /// A WebSocket session that subscribed with where it was gets what
    /// history holds after that (from the bus's stream when local history
    /// lacks it; what is published meanwhile waits behind).
    pub(super) async fn ws_history(&mut self, key: &str, channel: &str) {
        if !self.history.enabled() {
            return;
        }
        let Some(after) = self.ws.prev_id(key, channel) else {
            return;
        };
        let now = tokio::time::Instant::now();
        match self.history.look(key, channel, &after, now) {
            super::histories::Look::Found(items) => self.ws_replay(key, items).await,
            super::histories::Look::Asked => self.ws.await_history(key, channel),
            super::histories::Look::Unknown => {}
        }
    }

    /// Sends `items` to one WebSocket session, in order.
    pub(super) async fn ws_replay(&mut self, key: &str, items: Vec<Item>) {
        let keys = [key.to_owned()];
        for item in items {
            let deliveries = self.ws.deliveries(&item, &keys);
            self.report.count(|m| &m.history_replayed, deliveries.len());
            self.out.send_ws(deliveries).await;
        }
    }
}

/// The stream's items, then those published meanwhile that they do not
/// already include.
fn after_dedup(items: Vec<Item>, meanwhile: Vec<Item>) -> Vec<Item> {
    let had: HashSet<Option<String>> = items.iter().map(|i| i.id.clone()).collect();
    let fresh = meanwhile
        .into_iter()
        .filter(|i| i.id.is_none() || !had.contains(&i.id));
    items.into_iter().chain(fresh).collect()
}
