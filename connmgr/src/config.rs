//! connmgr's settings, from its command line (the runner derives them from
//! `pushpin.conf`, as Pushpin's runner does for condure).
//!
//! condure's spellings are accepted too (`--listen=addr,stream`,
//! `--stream-maxconn`, `--log-level`, `--tls-identities-dir`,
//! `--compression`), so Pushpin's runner can start `holdfast-connmgr` in
//! condure's place (`[runner] condure_bin`).

use clap::Parser;
use holdfast_runtime::DaemonArgs;
use std::net::SocketAddr;
use std::time::Duration;

/// Command line of `holdfast-connmgr`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "holdfast-connmgr",
    version,
    about = "Holdfast connection manager"
)]
pub struct Config {
    /// Instance id: the ZHTTP `from` address and ROUTER identity.
    #[arg(long, default_value = "connmgr")]
    pub id: String,

    /// Client address to listen on (repeatable): `[addr:]port`, with
    /// condure's parameters `,stream` (the only mode served) and `,tls`
    /// (with `default-cert=default_<port>`) also understood.
    #[arg(long = "listen", default_value = "0.0.0.0:7999", value_parser = parse_listen)]
    pub listen: Vec<Listen>,

    /// Share the listening ports with other connmgr processes
    /// (SO_REUSEPORT: the kernel spreads new connections over them).
    #[arg(long = "reuse-port")]
    pub reuse_port: bool,

    /// Client address to listen on with TLS (repeatable); needs `--certs`.
    #[arg(long = "tls-listen")]
    pub tls_listen: Vec<SocketAddr>,

    /// Folder of PEM certificates for TLS listeners: `<host>.crt` and
    /// `<host>.key`, `_.<parent domain>.*` for wildcards, and `default.*` (or
    /// `default_<port>.*`) for everything else.
    #[arg(long = "certs", alias = "tls-identities-dir")]
    pub certs: Option<std::path::PathBuf>,

    /// Base of the ZHTTP socket addresses toward the proxy: binds BASE-out
    /// (PUSH), BASE-out-stream (ROUTER) and BASE-in (SUB); for tcp://host:P,
    /// ports P, P+1 and P+2.
    #[arg(long = "zclient-stream")]
    pub zclient_stream: String,

    /// Bytes of request header accepted, and response bytes buffered per
    /// connection (the credits offered to the proxy).
    #[arg(long = "buffer-size", default_value_t = 8192)]
    pub buffer_size: usize,

    /// Most simultaneous client connections; further ones get 503.
    #[arg(long = "maxconn", alias = "stream-maxconn", default_value_t = 50_000)]
    pub maxconn: usize,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long = "max-body-size", default_value_t = 10 * 1024 * 1024)]
    pub max_body_size: u64,

    /// Seconds an idle keep-alive connection (or one sending its request
    /// header slowly) stays open.
    #[arg(long = "idle-timeout", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Where metrics reports go (the handler's metrics socket; PUSH,
    /// connected).
    #[arg(long = "metrics-spec")]
    pub metrics_spec: Option<String>,

    /// Negotiate permessage-deflate with WebSocket clients that offer it
    /// (condure's `--compression`).
    #[arg(long = "allow-compression", alias = "compression")]
    pub allow_compression: bool,

    /// Largest WebSocket message accepted from a client, in bytes; larger
    /// ones close the connection with 1009.
    #[arg(long = "max-message-size", default_value_t = 1024 * 1024)]
    pub max_message_size: usize,

    /// Format, log level, verbosity.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// One `--listen` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// Where.
    pub addr: SocketAddr,
    /// With TLS (condure's `,tls`).
    pub tls: bool,
}

/// `[addr:]port[,param...]` as condure takes it; only what Holdfast serves
/// is accepted, anything else is refused by name.
fn parse_listen(text: &str) -> Result<Listen, String> {
    let mut parts = text.split(',').map(str::trim);
    let addr_text = parts.next().unwrap_or_default();
    let addr = match addr_text.parse::<u16>() {
        Ok(port) => SocketAddr::from(([0, 0, 0, 0], port)),
        Err(_) => addr_text
            .parse()
            .map_err(|_| format!("expected [addr:]port, found {addr_text:?}"))?,
    };
    let mut listen = Listen { addr, tls: false };
    for param in parts {
        match param.split_once('=') {
            None if param == "stream" => {}
            None if param == "tls" => listen.tls = true,
            None if param == "req" => {
                return Err("req mode is not served: only stream mode (the default)".into())
            }
            None if param == "local" => {
                return Err("unix-socket listeners (local) are not supported".into())
            }
            Some(("default-cert", name)) => {
                // The certificate loader's own fallback order.
                if name != "default" && name != format!("default_{}", addr.port()) {
                    return Err(format!(
                        "default-cert={name}: the default certificate is default_{}.* or default.* in the certificates folder",
                        addr.port()
                    ));
                }
            }
            _ => return Err(format!("unknown listen parameter {param:?}")),
        }
    }
    Ok(listen)
}

impl Config {
    /// Idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_condure_command_lines() {
        let config = Config::try_parse_from([
            "holdfast-connmgr",
            "--log-level=2",
            "--listen=127.0.0.1:29999,stream",
            "--listen=8443,stream,tls,default-cert=default_8443",
            "--zclient-stream=ipc:///run/pushpin-condure",
            "--buffer-size=8192",
            "--stream-maxconn=50000",
            "--tls-identities-dir=/etc/pushpin/runner/certs",
            "--compression",
        ])
        .expect("condure's flags");
        assert_eq!(
            config.listen,
            vec![
                Listen {
                    addr: "127.0.0.1:29999".parse().unwrap(),
                    tls: false
                },
                Listen {
                    addr: "0.0.0.0:8443".parse().unwrap(),
                    tls: true
                },
            ]
        );
        assert_eq!(config.maxconn, 50_000);
        assert!(config.allow_compression);
        assert_eq!(config.daemon.log_level, 2);
        assert!(config.certs.is_some());
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        for (listen, says) in [
            ("127.0.0.1:80,req", "req mode"),
            ("/run/sock,local,stream", "expected [addr:]port"),
            ("80,local", "unix-socket"),
            ("80,stream,bogus", "unknown listen parameter"),
            ("443,tls,default-cert=example", "default_443"),
            ("host:80", "expected [addr:]port"),
        ] {
            let err = parse_listen(listen).expect_err(listen);
            assert!(err.contains(says), "{listen}: {err}");
        }
    }
}
