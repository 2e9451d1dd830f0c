//! Metrics: each process keeps its counters, gauges and histograms in a
//! [`Registry`] and sends a [`Report`] of them to the handler every second
//! (PUSH to the handler's metrics socket); the handler serves every
//! process's latest report as Prometheus text ([`render`]) on `/metrics`,
//! and answers `/health` from who reported lately.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often processes report.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One value of a report: a sample of a metric family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Family name (`holdfast_...`).
    pub family: String,
    /// Series name: the family's, or `_bucket`/`_sum`/`_count` of a
    /// histogram.
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// One line of help.
    pub help: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// The value, as Prometheus writes it.
    pub value: String,
}

/// A process's samples at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `connmgr`, `proxy` or `handler`.
    pub process: String,
    /// The instance id.
    pub id: String,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// Observations of durations.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

enum Value {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<AtomicI64>),
    Histogram(Arc<Histogram>),
}

struct Entry {
    name: &'static str,
    help: &'static str,
    labels: Vec<(String, String)>,
    value: Value,
}

/// Samples computed when a report is made (from state kept elsewhere).
pub type Collector = Box<dyn Fn() -> Vec<Sample> + Send + Sync>;

/// A process's metrics.
pub struct Registry {
    process: String,
    id: String,
    entries: Mutex<Vec<Entry>>,
    collectors: Mutex<Vec<Collector>>,
}

fn labels(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Registry {
    /// An empty registry for process `process` (`connmgr`, `proxy`,
    /// `handler`) with instance id `id`.
    pub fn new(process: &str, id: &str) -> Arc<Registry> {
        Arc::new(Registry {
            process: process.to_owned(),
            id: id.to_owned(),
            entries: Mutex::new(Vec::new()),
            collectors: Mutex::new(Vec::new()),
        })
    }

    fn add(&self, entry: Entry) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.push(entry);
        }
    }

    /// A counter.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        list: &[(&str, &str)],
    ) -> Arc<AtomicU64> {
        let value = Arc::new(AtomicU64::new(0));
        self.add(Entry {
            name,
            help,
            labels: labels(list),
            value: Value::Counter(value.clone()),
        });
        value
    }

    /// A gauge.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        list: &[(&str, &str)],
    ) -> Arc<AtomicI64> {
        let value = Arc::new(AtomicI64::new(0));
        self.add(Entry {
            name,
            help,
            labels: labels(list),
            value: Value::Gauge(value.clone()),
        });
        value
    }

    /// A duration histogram with [`LATENCY_BUCKETS`].
    pub fn histogram(&self, name: &'static str, help: &'static str) -> Arc<Histogram> {
        let value = Arc::new(Histogram {
            bounds: LATENCY_BUCKETS,
            buckets: LATENCY_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        });
        self.add(Entry {
            name,
            help,
            labels: Vec::new(),
            value: Value::Histogram(value.clone()),
        });
        value
    }

    /// Samples computed at each report.
    pub fn collect(&self, collector: Collector) {
        if let Ok(mut collectors) = self.collectors.lock() {
            collectors.push(collector);
        }
    }

    /// Everything now.
    pub fn report(&self) -> Report {
        let mut samples = Vec::new();
        if let Ok(entries) = self.entries.lock() {
            for e in entries.iter() {
                let sample =
                    |name: String, kind: &str, labels: Vec<(String, String)>, value: String| {
                        Sample {
                            family: e.name.to_owned(),
                            name,
                            kind: kind.to_owned(),
                            help: e.help.to_owned(),
                            labels,
                            value,
                        }
                    };
                match &e.value {
                    Value::Counter(v) => samples.push(sample(
                        e.name.to_owned(),
                        "counter",
                        e.labels.clone(),
                        v.load(Ordering::Relaxed).to_string(),
                    )),
                    Value::Gauge(v) => samples.push(sample(
                        e.name.to_owned(),
                        "gauge",
                        e.labels.clone(),
                        v.load(Ordering::Relaxed).to_string(),
                    )),
                    Value::Histogram(h) => {
                        for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
                            samples.push(sample(
                                format!("{}_bucket", e.name),
                                "histogram",
                                vec![("le".into(), bound.to_string())],
                                bucket.load(Ordering::Relaxed).to_string(),
                            ));
                        }
                        let count = h.count.load(Ordering::Relaxed).to_string();
                        samples.push(sample(
                            format!("{}_bucket", e.name),
                            "histogram",
                            vec![("le".into(), "+Inf".into())],
                            count.clone(),
                        ));
                        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                        samples.push(sample(
                            format!("{}_sum", e.name),
                            "histogram",
                            Vec::new(),
                            sum.to_string(),
                        ));
                        samples.push(sample(
                            format!("{}_count", e.name),
                            "histogram",
                            Vec::new(),
                            count,
                        ));
                    }
                }
            }
        }
        if let Ok(collectors) = self.collectors.lock() {
            for collector in collectors.iter() {
                samples.extend(collector());
            }
        }
        Report {
            process: self.process.clone(),
            id: self.id.clone(),
            samples,
        }
    }
}

/// Sends the registry's report through `out` (a PUSH socket toward the
/// handler) every [`REPORT_INTERVAL`], until `out` closes.
pub fn spawn_reporter(
    registry: Arc<Registry>,
    out: tokio::sync::mpsc::Sender<Vec<Vec<u8>>>,
    format: holdfast_protocol::Format,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REPORT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let frame = match holdfast_protocol::format::encode(&registry.report(), format) {
                Ok(frame) => frame,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics report not encoded");
                    continue;
                }
            };
            // A full queue (no handler): this report is skipped.
            match out.try_send(vec![frame]) {
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                _ => continue,
            }
        }
    });
}

/// A sample for a [`Collector`].
pub fn sample(
    family: &str,
    kind: &str,
    help: &str,
    labels: &[(&str, &str)],
    value: impl ToString,
) -> Sample {
    Sample {
        family: family.to_owned(),
        name: family.to_owned(),
        kind: kind.to_owned(),
        help: help.to_owned(),
        labels: self::labels(labels),
        value: value.to_string(),
    }
}

/// Prometheus text for the reports: one `# HELP`/`# TYPE` per family, each
/// sample labelled with the process that reported it.
pub fn render(reports: &[Report]) -> String {
    let mut families: BTreeMap<&str, (&str, &str, Vec<String>)> = BTreeMap::new();
    for report in reports {
        for s in &report.samples {
            let mut labels = vec![format!("process=\"{}\"", escape(&report.id))];
            labels.extend(
                s.labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v))),
            );
            let line = format!("{}{{{}}} {}", s.name, labels.join(","), s.value);
            families
                .entry(&s.family)
                .or_insert((&s.kind, &s.help, Vec::new()))
                .2
                .push(line);
        }
    }
    let mut out = String::new();
    for (family, (kind, help, lines)) in families {
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_protocol::format::{decode, encode, Format};

    #[test]
    fn report_render_and_wire() {
        let registry = Registry::new("proxy", "proxy-1");
        let requests = registry.counter("holdfast_requests_total", "Requests.", &[]);
        let open = registry.gauge(
            "holdfast_connections_open",
            "Open connections.",
            &[("transport", "http1")],
        );
        let latency = registry.histogram("holdfast_origin_response_seconds", "Origin latency.");
        registry.collect(Box::new(|| {
            vec![sample(
                "holdfast_cache_objects",
                "gauge",
                "Objects.",
                &[],
                3,
            )]
        }));
        requests.fetch_add(2, Ordering::Relaxed);
        open.fetch_add(5, Ordering::Relaxed);
        latency.observe(Duration::from_millis(3));
        latency.observe(Duration::from_secs(20));
        let report = registry.report();
        for format in [Format::TNetString, Format::MessagePack] {
            let again: Report = decode(&encode(&report, format).unwrap()).unwrap();
            assert_eq!(again, report);
        }
        let text = render(&[report]);
        for line in [
            "# TYPE holdfast_requests_total counter",
            "holdfast_requests_total{process=\"proxy-1\"} 2",
            "holdfast_connections_open{process=\"proxy-1\",transport=\"http1\"} 5",
            "# TYPE holdfast_origin_response_seconds histogram",
            "holdfast_origin_response_seconds_bucket{process=\"proxy-1\",le=\"0.0025\"} 0",
            "holdfast_origin_response_seconds_bucket{process=\"proxy-1\",le=\"0.005\"} 1",
            "holdfast_origin_response_seconds_bucket{process=\"proxy-1\",le=\"+Inf\"} 2",
            "holdfast_origin_response_seconds_count{process=\"proxy-1\"} 2",
            "holdfast_cache_objects{process=\"proxy-1\"} 3",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
