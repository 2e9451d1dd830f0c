//! Socket addresses ("specs") as Pushpin writes them: `ipc://path`,
//! `tcp://host:port`, several separated by commas.

/// A spec that could not be bound or connected.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {spec}: {source}")]
pub struct SpecError {
    /// `bind` or `connect`.
    pub action: &'static str,
    /// The address.
    pub spec: String,
    /// libzmq's reason.
    pub source: zmq::Error,
}

/// Binds (or connects) `socket` to every comma-separated spec in `specs`.
pub fn apply_specs(socket: &zmq::Socket, specs: &str, bind: bool) -> Result<(), SpecError> {
    for spec in specs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let result = if bind {
            socket.bind(spec)
        } else {
            socket.connect(spec)
        };
        result.map_err(|source| SpecError {
            action: if bind { "bind" } else { "connect" },
            spec: spec.to_owned(),
            source,
        })?;
    }
    Ok(())
}
