//! Where a held session's response stands: held, streaming, asking the
//! origin again, or closing.

/// Where a held session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Held, its response not started: a long-poll waiting, or a stream
    /// before its head went out.
    Held,
    /// A stream whose head went out: items flow.
    Streaming,
    /// The origin is being asked again (a long-poll retry, a stream's next
    /// link); `started`: the stream's head had already gone out.
    Asking {
        /// The response head went out before.
        started: bool,
    },
    /// Ending: what is queued goes out, then the response ends.
    Closing,
}

impl Phase {
    /// Whether the response head went out.
    pub fn started(self) -> bool {
        matches!(
            self,
            Phase::Streaming | Phase::Asking { started: true } | Phase::Closing
        )
    }

    /// Whether a request to the origin is in flight.
    pub fn asking(self) -> bool {
        matches!(self, Phase::Asking { .. })
    }

    /// Whether the session is ending.
    pub fn closing(self) -> bool {
        self == Phase::Closing
    }

    /// The phase once the origin is being asked (from a phase that is not
    /// closing).
    pub fn ask(self) -> Phase {
        Phase::Asking {
            started: self.started(),
        }
    }

    /// The phase once the origin's answer is in.
    pub fn answered(self) -> Phase {
        match self {
            Phase::Asking { started: true } => Phase::Streaming,
            Phase::Asking { started: false } => Phase::Held,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases() {
        let held = Phase::Held;
        assert!(!held.started() && !held.asking() && !held.closing());
        assert_eq!(held.ask(), Phase::Asking { started: false });
        assert_eq!(held.ask().answered(), Phase::Held);
        let streaming = Phase::Streaming;
        assert!(streaming.started());
        assert_eq!(streaming.ask(), Phase::Asking { started: true });
        assert!(streaming.ask().started() && streaming.ask().asking());
        assert_eq!(streaming.ask().answered(), Phase::Streaming);
        assert_eq!(Phase::Closing.answered(), Phase::Closing);
    }
}
