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

/// The three addresses of a ZHTTP stream link derived from a spec base, as
/// Pushpin derives them: for `ipc://path`, `path-out` (PUSH, first packets),
/// `path-out-stream` (ROUTER, later packets) and `path-in` (SUB, replies);
/// for `tcp://host:P`, ports P, P+1 and P+2 in that order.
pub fn stream_specs(base: &str) -> Result<[String; 3], String> {
    if let Some(rest) = base.strip_prefix("tcp://") {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{base}: a tcp spec needs host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{base}: bad port {port:?}"))?;
        let at = |n: u16| {
            port.checked_add(n)
                .map(|p| format!("tcp://{host}:{p}"))
                .ok_or_else(|| format!("{base}: port out of range"))
        };
        Ok([at(0)?, at(1)?, at(2)?])
    } else {
        Ok([
            format!("{base}-out"),
            format!("{base}-out-stream"),
            format!("{base}-in"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::stream_specs;

    #[test]
    fn derives_three_addresses() {
        assert_eq!(
            stream_specs("ipc:///run/x-connmgr").unwrap(),
            [
                "ipc:///run/x-connmgr-out",
                "ipc:///run/x-connmgr-out-stream",
                "ipc:///run/x-connmgr-in"
            ]
        );
        assert_eq!(
            stream_specs("tcp://127.0.0.1:9000").unwrap(),
            [
                "tcp://127.0.0.1:9000",
                "tcp://127.0.0.1:9001",
                "tcp://127.0.0.1:9002"
            ]
        );
        assert!(stream_specs("tcp://nohost").is_err());
        assert!(stream_specs("tcp://h:65535").is_err());
    }
}
