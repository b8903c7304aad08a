//! `GET /metrics`: Prometheus metrics read at scrape time. Containers'
//! figures carry cAdvisor's names and labels (`id`, `name`, `image`), read
//! from their cgroups through the isolators' usage; berth's own metrics are
//! prefixed `berth_`. Encoded with `prometheus-client` (OpenMetrics text);
//! a client that does not ask for OpenMetrics gets the Prometheus text
//! format 0.0.4 (the same lines without the `# EOF` trailer, and a
//! counter's `# HELP`/`# TYPE` lines naming its `_total` samples).

mod agent;
mod fs_usage;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::container::{Container, State as ContainerState};
use crate::manager::Manager;

pub use agent::{count_requests, AgentMetrics, AGENT};

type Labels = Vec<(String, String)>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route's handler.
pub async fn metrics(State(manager): State<Arc<Manager>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let text = match tokio::task::spawn_blocking(move || render(&manager)).await {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            tracing::error!("encode metrics: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Err(e) => {
            tracing::error!("metrics task: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, TEXT_004)], to_text_004(&text)).into_response()
    }
}

fn state_name(state: &ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "unknown",
    }
}

/// A gauge read from an isolator's usage: (name, help, isolator, key).
const GAUGES: &[(&str, &str, &str, &str)] = &[
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        "memory",
        "current_bytes",
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes",
        "memory",
        "working_set_bytes",
    ),
    (
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        "memory",
        "peak_bytes",
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes",
        "memory",
        "rss_bytes",
    ),
    (
        "container_memory_cache",
        "Number of bytes of page cache memory",
        "memory",
        "cache_bytes",
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container",
        "memory",
        "limit_bytes",
    ),
    (
        "container_spec_cpu_quota",
        "CPU quota of the container",
        "cpu",
        "quota_us",
    ),
    (
        "container_spec_cpu_period",
        "CPU period of the container",
        "cpu",
        "period_us",
    ),
    (
        "container_spec_cpu_shares",
        "CPU share of the container",
        "cpu",
        "shares",
    ),
    (
        "container_processes",
        "Number of processes running inside the container",
        "pids",
        "current",
    ),
];

/// A counter read from an isolator's usage: (name without `_total`,
/// help, isolator, key).
const COUNTERS: &[(&str, &str, &str, &str)] = &[
    (
        "container_cpu_usage_seconds",
        "Cumulative cpu time consumed in seconds",
        "cpu",
        "usage_seconds",
    ),
    (
        "container_cpu_user_seconds",
        "Cumulative user cpu time consumed in seconds",
        "cpu",
        "user_seconds",
    ),
    (
        "container_cpu_system_seconds",
        "Cumulative system cpu time consumed in seconds",
        "cpu",
        "system_seconds",
    ),
    (
        "container_cpu_cfs_periods",
        "Number of elapsed enforcement period intervals",
        "cpu",
        "nr_periods",
    ),
    (
        "container_cpu_cfs_throttled_periods",
        "Number of throttled period intervals",
        "cpu",
        "nr_throttled",
    ),
    (
        "container_cpu_cfs_throttled_seconds",
        "Total time duration the container has been throttled",
        "cpu",
        "throttled_seconds",
    ),
    (
        "container_oom_events",
        "Count of out of memory events observed for the container",
        "memory",
        "oom_kills",
    ),
];

/// A counter with a fractional value (seconds).
type FloatCounter = Counter<f64, AtomicU64>;
/// A gauge with a fractional value.
type FloatGauge = Gauge<f64, AtomicU64>;

/// cAdvisor's labels of a container: `id`, `name`, `image` and a
/// `container_label_<name>` for each of its labels (names made
/// Prometheus-safe; the first of two keys that map to one name wins, as a
/// series may not repeat a label).
fn container_labels(container: &Container) -> Labels {
    let mut labels = vec![
        (
            "id".to_string(),
            format!("/berth/{}", container.id.as_str()),
        ),
        ("name".to_string(), container.id.as_str().to_string()),
        (
            "image".to_string(),
            container.image.clone().unwrap_or_default(),
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (key, value) in &container.labels {
        let name: String = key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if seen.insert(name.clone()) {
            labels.push((format!("container_label_{name}"), value.clone()));
        }
    }
    labels
}

/// The label set of one container series: the container's labels (built
/// once per container and scrape, shared by its series) and the series' own
/// (`device`, `stream`...). Equal and hashed by the container's place in
/// the scrape and the series' own labels only: the families' lookups do not
/// hash every label of every series.
#[derive(Clone, Debug)]
struct Series {
    index: usize,
    labels: Arc<Labels>,
    extra: Vec<(&'static str, String)>,
}

impl Series {
    fn new(index: usize, labels: &Arc<Labels>) -> Self {
        Series {
            index,
            labels: labels.clone(),
            extra: Vec::new(),
        }
    }

    /// This series with more labels.
    fn with(&self, extra: &[(&'static str, &str)]) -> Self {
        let mut out = self.clone();
        out.extra
            .extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        out
    }
}

impl PartialEq for Series {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index && self.extra == other.extra
    }
}

impl Eq for Series {}

impl std::hash::Hash for Series {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.index.hash(state);
        self.extra.hash(state);
    }
}

impl EncodeLabelSet for Series {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.labels.as_slice().encode(encoder)?;
        self.extra.as_slice().encode(encoder)
    }
}

/// The families a scrape fills beyond the isolators' plain figures.
#[derive(Default)]
struct Extra {
    blkio: Family<Series, Counter>,
    fs_usage: Family<Series, FloatGauge>,
    start_time: Family<Series, FloatGauge>,
    last_seen: Family<Series, FloatGauge>,
    log_written: Family<Series, Counter>,
    log_dropped: Family<Series, Counter>,
    log_lost: Family<Series, Counter>,
}

/// Reads every figure now and encodes them.
fn render(manager: &Manager) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let containers = Family::<Labels, Gauge>::default();
    let gauges: Vec<Family<Series, FloatGauge>> =
        GAUGES.iter().map(|_| Family::default()).collect();
    let counters: Vec<Family<Series, FloatCounter>> =
        COUNTERS.iter().map(|_| Family::default()).collect();
    let extra = Extra::default();
    let list = manager.list();
    for state in ["created", "running", "exited", "unknown"] {
        containers
            .get_or_create(&vec![("state".to_string(), state.to_string())])
            .set(0);
    }
    for container in &list {
        containers
            .get_or_create(&vec![(
                "state".to_string(),
                state_name(&container.state).to_string(),
            )])
            .inc();
    }
    let running: Vec<&Container> = list
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .collect();
    let uppers: Vec<std::path::PathBuf> =
        running.iter().map(|c| manager.upper_dir(&c.id)).collect();
    let dirs: Vec<fs_usage::Dirs<'_>> = running
        .iter()
        .zip(&uppers)
        .map(|(c, upper)| fs_usage::Dirs {
            id: &c.id,
            started_at: c.started_at,
            sandbox: &c.sandbox,
            upper,
        })
        .collect();
    let (fs, device) = fs_usage::usage(&dirs, &manager.config().work_dir);
    // cAdvisor's last_seen: whole seconds since the epoch.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as f64;
    for (index, (container, fs)) in running.iter().zip(fs).enumerate() {
        // Not the disk isolator's usage: with the du backend it walks the
        // sandbox on every call; fs usage has its own cached walk.
        let stats = manager.scrape_usage(container, &["disk"]);
        let labels = Series::new(index, &Arc::new(container_labels(container)));
        let figure = |isolator: &str, key: &str| {
            stats
                .get(isolator)
                .and_then(|m| m.get(key))
                .and_then(|v| v.as_f64())
        };
        for ((_, _, isolator, key), family) in GAUGES.iter().zip(&gauges) {
            if let Some(v) = figure(isolator, key) {
                family.get_or_create(&labels).set(v);
            }
        }
        for ((_, _, isolator, key), family) in COUNTERS.iter().zip(&counters) {
            if let Some(v) = figure(isolator, key) {
                family.get_or_create(&labels).inc_by(v);
            }
        }
        add_blkio(&extra.blkio, &labels, &stats);
        if let Some(bytes) = fs {
            extra
                .fs_usage
                .get_or_create(&labels.with(&[("device", &device)]))
                .set(bytes as f64);
        }
        if let Some(started) = container.started_at {
            extra
                .start_time
                .get_or_create(&labels)
                .set(started.unix_seconds());
        }
        extra.last_seen.get_or_create(&labels).set(now);
        match crate::logs::counters::read(&manager.store().state_dir(&container.id)) {
            Ok(Some(logs)) => {
                for (stream, c) in [("stdout", logs.stdout), ("stderr", logs.stderr)] {
                    let labels = labels.with(&[("stream", stream)]);
                    extra.log_written.get_or_create(&labels).inc_by(c.bytes);
                    extra
                        .log_dropped
                        .get_or_create(&labels)
                        .inc_by(c.dropped_bytes);
                    extra.log_lost.get_or_create(&labels).inc_by(c.lost_bytes);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(id = %container.id, "metrics: {e}"),
        }
    }
    registry.register(
        "berth_containers",
        "Containers this agent knows, by state",
        containers,
    );
    for ((name, help, _, _), family) in GAUGES.iter().zip(gauges) {
        registry.register(*name, *help, family);
    }
    for ((name, help, _, _), family) in COUNTERS.iter().zip(counters) {
        registry.register(*name, *help, family);
    }
    registry.register(
        "container_blkio_device_usage",
        "Blkio Device bytes usage",
        extra.blkio,
    );
    registry.register(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem",
        extra.fs_usage,
    );
    registry.register(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds",
        extra.start_time,
    );
    registry.register(
        "container_last_seen",
        "Last time a container was seen by the exporter",
        extra.last_seen,
    );
    registry.register(
        "berth_log_written_bytes",
        "Bytes of a container's output written to its log files, by stream",
        extra.log_written,
    );
    registry.register(
        "berth_log_dropped_bytes",
        "Bytes of a container's output discarded in drop mode because the disk fell behind, by stream",
        extra.log_dropped,
    );
    registry.register(
        "berth_log_lost_bytes",
        "Bytes of a container's output read but not written (write errors), by stream",
        extra.log_lost,
    );
    AGENT.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// cAdvisor's `container_blkio_device_usage_total{device, major, minor,
/// operation}`: bytes read (`Read`) and written (`Write`) per device, from
/// the blkio isolator's `devices` (keyed `MAJ:MIN`, with the kernel's name
/// when sysfs knows it).
fn add_blkio(
    family: &Family<Series, Counter>,
    labels: &Series,
    stats: &serde_json::Map<String, serde_json::Value>,
) {
    let Some(devices) = stats
        .get("blkio")
        .and_then(|b| b.get("devices"))
        .and_then(|d| d.as_object())
    else {
        return;
    };
    for (number, io) in devices {
        let Some((major, minor)) = number.split_once(':') else {
            continue;
        };
        let device = io
            .get("name")
            .and_then(|n| n.as_str())
            .map(|n| format!("/dev/{n}"))
            .unwrap_or_default();
        for (operation, key) in [("Read", "read_bytes"), ("Write", "write_bytes")] {
            if let Some(v) = io.get(key).and_then(|v| v.as_u64()) {
                family
                    .get_or_create(&labels.with(&[
                        ("device", &device),
                        ("major", major),
                        ("minor", minor),
                        ("operation", operation),
                    ]))
                    .inc_by(v);
            }
        }
    }
}

/// OpenMetrics text to the Prometheus text format 0.0.4: no `# EOF`, and a
/// counter's `# HELP`/`# TYPE` name its `_total` samples.
fn to_text_004(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_for_text_004() {
        let om = "# HELP c_seconds Help.\n# TYPE c_seconds counter\nc_seconds_total{a=\"b\"} 1.5\n# HELP g Help.\n# TYPE g gauge\ng 2\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP c_seconds_total Help.\n# TYPE c_seconds_total counter\nc_seconds_total{a=\"b\"} 1.5\n# HELP g Help.\n# TYPE g gauge\ng 2\n"
        );
    }
}
