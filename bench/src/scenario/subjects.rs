//! What a scenario compares: Holdfast (this build, another build, two
//! connection managers) and Pushpin 1.36 (its packaged pacing, or tuned),
//! started through the harness at warning level, in front of a route's
//! target. Names as the old scripts' `PROXIES` took them.

use holdfast_tests::harness::holdfast::{Holdfast, HoldfastBuilder};
use holdfast_tests::harness::pushpin::Pushpin;
use std::path::PathBuf;
use std::str::FromStr;

/// A proxy to measure.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// This build of Holdfast.
    Holdfast,
    /// Holdfast with `connmgr_count=2`.
    Holdfast2Connmgr,
    /// The Holdfast build in this folder (an A/B run).
    HoldfastAlt(PathBuf),
    /// Pushpin 1.36, its packaged config's pacing (`message_rate=2500`,
    /// `message_hwm=25000`).
    PushpinDefault,
    /// Pushpin 1.36 with `message_rate=1000000`.
    PushpinTuned,
}

impl FromStr for Subject {
    type Err = String;

    fn from_str(s: &str) -> Result<Subject, String> {
        match s {
            "holdfast" => Ok(Subject::Holdfast),
            "holdfast-2connmgr" => Ok(Subject::Holdfast2Connmgr),
            "pushpin-default" | "pushpin" => Ok(Subject::PushpinDefault),
            "pushpin-tuned" => Ok(Subject::PushpinTuned),
            other => match other.strip_prefix("holdfast-alt:") {
                Some(dir) if !dir.is_empty() => Ok(Subject::HoldfastAlt(PathBuf::from(dir))),
                _ => Err(format!(
                    "{other:?}: expected holdfast, holdfast-2connmgr, holdfast-alt:<bin folder>, pushpin-default or pushpin-tuned"
                )),
            },
        }
    }
}

impl Subject {
    /// Its name in tables.
    pub fn name(&self) -> String {
        match self {
            Subject::Holdfast => "holdfast".into(),
            Subject::Holdfast2Connmgr => "holdfast-2connmgr".into(),
            Subject::HoldfastAlt(dir) => format!("holdfast-alt ({})", dir.display()),
            Subject::PushpinDefault => "pushpin-default".into(),
            Subject::PushpinTuned => "pushpin-tuned".into(),
        }
    }

    /// Whether it is a Holdfast.
    pub fn is_holdfast(&self) -> bool {
        !matches!(self, Subject::PushpinDefault | Subject::PushpinTuned)
    }
}

/// What every subject of a run shares: its route and extra settings.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The route line (`* 127.0.0.1:8080,over_http`).
    pub route: String,
    /// `[section] key=value` settings (Holdfast's; Pushpin's handler ones
    /// too where they mean the same).
    pub settings: Vec<(String, String, String)>,
}

impl Setup {
    /// A setup routing everything with `route`.
    pub fn route(route: impl Into<String>) -> Setup {
        Setup {
            route: route.into(),
            settings: Vec::new(),
        }
    }

    /// Adds a setting.
    pub fn set(mut self, section: &str, key: &str, value: impl ToString) -> Setup {
        self.settings
            .push((section.into(), key.into(), value.to_string()));
        self
    }

    /// Holdfast's runner for very many connections: `connmgrs` connection
    /// managers, and `client_maxconn` (Pushpin's default is 50,000) with
    /// 30% headroom, as each connmgr gets an equal share of it and the
    /// kernel spreads connections over them unevenly.
    pub fn many_connections(self, connections: usize, connmgrs: usize) -> Setup {
        self.set("runner", "connmgr_count", connmgrs).set(
            "runner",
            "client_maxconn",
            connections * 13 / 10 + 1000,
        )
    }
}

/// A started subject.
pub enum Running {
    /// Holdfast.
    Holdfast(Holdfast),
    /// Pushpin.
    Pushpin(Pushpin),
}

impl Running {
    /// Its client address (`127.0.0.1:port`).
    pub fn addr(&self) -> String {
        match self {
            Running::Holdfast(h) => h.addr(),
            Running::Pushpin(p) => format!("127.0.0.1:{}", p.port),
        }
    }

    /// Its publish API (`http://127.0.0.1:port`).
    pub fn publish(&self) -> String {
        match self {
            Running::Holdfast(h) => format!("http://127.0.0.1:{}", h.publish_port),
            Running::Pushpin(p) => format!("http://127.0.0.1:{}", p.publish_port),
        }
    }

    /// Its runner's process id (its processes are its children).
    pub fn pid(&self) -> u32 {
        match self {
            Running::Holdfast(h) => h.pid,
            Running::Pushpin(p) => p.pid(),
        }
    }
}

/// Starts `subject` for `setup`, and waits until it is ready.
pub async fn start(subject: &Subject, setup: &Setup) -> Running {
    if !subject.is_holdfast() {
        let mut builder = Pushpin::builder().route(&setup.route).log_level(1);
        let rate = if *subject == Subject::PushpinTuned {
            "1000000"
        } else {
            "2500"
        };
        builder =
            builder
                .set("handler", "message_rate", rate)
                .set("handler", "message_hwm", "25000");
        for (section, key, value) in setup.settings.iter().filter(|(s, _, _)| s == "handler") {
            builder = builder.set(section, key, value.clone());
        }
        return Running::Pushpin(builder.run().await);
    }
    let mut builder = holdfast(setup);
    match subject {
        Subject::Holdfast2Connmgr => builder = builder.set("runner", "connmgr_count", "2"),
        Subject::HoldfastAlt(dir) => builder = builder.bin_dir(dir),
        _ => {}
    }
    Running::Holdfast(builder.run().await)
}

/// Holdfast at warning level (its access lines would cost the run) for
/// `setup`.
pub fn holdfast(setup: &Setup) -> HoldfastBuilder {
    let mut builder = Holdfast::builder()
        .set("runner", "log_level", "1")
        .routes_file(format!("{}\n", setup.route));
    for (section, key, value) in &setup.settings {
        builder = builder.set(section, key, value.clone());
    }
    builder
}

/// Parses a comma-separated list of subjects.
pub fn parse_list(list: &str) -> Result<Vec<Subject>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Subject::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_by_name() {
        assert_eq!(
            parse_list("holdfast, pushpin-tuned,holdfast-alt:/tmp/b").unwrap(),
            vec![
                Subject::Holdfast,
                Subject::PushpinTuned,
                Subject::HoldfastAlt("/tmp/b".into())
            ]
        );
        assert!(parse_list("nginx").is_err());
        assert!(parse_list("holdfast-alt:").is_err());
        assert_eq!(Subject::PushpinDefault.name(), "pushpin-default");
    }
}
