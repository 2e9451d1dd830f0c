//! A session's subscriptions, and the channels whose history it awaits
//! from the bus (shared with WebSocket sessions' subscriptions).

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Channel (route prefix applied).
    pub name: String,
    /// The last id this session got (or the origin said it had).
    pub prev_id: Option<String>,
    /// Filters, in order.
    pub filters: Vec<String>,
}

/// A session's history lookups under way on the bus.
#[derive(Debug, Default)]
pub struct AwaitingHistory {
    /// `(channel, the origin named the position)`: when history does not
    /// reach back, such a session asks the origin, as without history.
    pub channels: Vec<(String, bool)>,
    /// Items published on those channels meanwhile, in order.
    pub held_back: Vec<holdfast_protocol::publish::Item>,
}

impl AwaitingHistory {
    /// Whether `channel`'s history is awaited.
    pub fn awaits(&self, channel: &str) -> bool {
        self.channels.iter().any(|(c, _)| c == channel)
    }
}
