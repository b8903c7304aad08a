//! The containers' series of a scrape: every running container's figures
//! are read first ([`scrape`], through [`Manager::scrape_usage`]), then
//! encoded family by family straight from what was read ([`Collector`]):
//! no metric objects, maps or hashing per series.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde_json::{Map, Value};

use super::{fs_usage, log_counters};
use crate::container::ContainerView as Container;
use crate::logs::counters::LogCounters;
use crate::manager::Manager;

/// A gauge read from an isolator's scrape figures: (name, help, isolator,
/// key).
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

/// A counter read from an isolator's scrape figures: (name without
/// `_total`, help, isolator, key).
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

/// One running container as the scrape read it.
#[derive(Debug)]
struct Scraped {
    /// cAdvisor's labels ([`container_labels`]).
    labels: Vec<(String, String)>,
    /// Each isolator's scrape figures, by isolator.
    usage: Map<String, Value>,
    /// `container_fs_usage_bytes`.
    fs_bytes: Option<u64>,
    /// The start, in seconds since the epoch.
    started: Option<f64>,
    logs: Option<LogCounters>,
}

impl Scraped {
    fn figure(&self, isolator: &str, key: &str) -> Option<f64> {
        self.usage.get(isolator)?.get(key)?.as_f64()
    }
}

/// The running containers' figures, read at the scrape; encoded by
/// [`Collector::encode`].
#[derive(Debug)]
pub(super) struct Containers {
    scraped: Vec<Scraped>,
    /// The `device` label of `container_fs_usage_bytes`.
    fs_device: String,
    /// cAdvisor's `container_last_seen`: whole seconds since the epoch.
    now: f64,
}

/// Reads the figures of the `running` containers.
pub(super) fn scrape(manager: &Manager, running: &[&Container]) -> Containers {
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
    let (fs, fs_device) = fs_usage::usage(&dirs, &manager.config().work_dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as f64;
    let state_dirs: Vec<std::path::PathBuf> = running
        .iter()
        .map(|c| manager.store().state_dir(&c.id))
        .collect();
    let logs = log_counters::read(
        &running
            .iter()
            .zip(&state_dirs)
            .map(|(c, dir)| (&c.id, dir.as_path()))
            .collect::<Vec<_>>(),
    );
    let scraped = running
        .iter()
        .zip(fs)
        .zip(logs)
        .map(|((container, fs_bytes), logs)| Scraped {
            labels: container_labels(container),
            usage: manager.scrape_usage(container),
            fs_bytes,
            started: container.started_at.map(|t| t.unix_seconds()),
            logs,
        })
        .collect();
    Containers {
        scraped,
        fs_device,
        now,
    }
}

/// cAdvisor's labels of a container: `id`, `name`, `image` and a
/// `container_label_<name>` for each of its labels (names made
/// Prometheus-safe; the first of two keys that map to one name wins, as a
/// series may not repeat a label).
fn container_labels(container: &Container) -> Vec<(String, String)> {
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

/// A family's descriptor, then one sample per container that has a value.
fn family<V, L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    samples: impl Iterator<Item = (L, V)>,
    write: impl Fn(&mut prometheus_client::encoding::MetricEncoder, &V) -> fmt::Result,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        write(&mut metric.encode_family(&labels)?, &value)?;
    }
    Ok(())
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    metric: &mut prometheus_client::encoding::MetricEncoder,
    value: &V,
) -> fmt::Result {
    metric.encode_gauge(value)
}

fn counter<V: prometheus_client::encoding::EncodeCounterValue>(
    metric: &mut prometheus_client::encoding::MetricEncoder,
    value: &V,
) -> fmt::Result {
    metric.encode_counter::<NoLabelSet, V, f64>(value, None)
}

impl Collector for Containers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let all = || self.scraped.iter();
        type Write = fn(&mut prometheus_client::encoding::MetricEncoder, &f64) -> fmt::Result;
        let figures = (GAUGES
            .iter()
            .map(|g| (g, MetricType::Gauge, gauge as Write)))
        .chain(
            COUNTERS
                .iter()
                .map(|c| (c, MetricType::Counter, counter as Write)),
        );
        for ((name, help, isolator, key), kind, write) in figures {
            let samples =
                all().filter_map(|c| Some((c.labels.as_slice(), c.figure(isolator, key)?)));
            family(&mut encoder, (name, help, kind), samples, write)?;
        }
        // cAdvisor's `container_blkio_device_usage_total{device, major,
        // minor, operation}`: bytes read (`Read`) and written (`Write`) per
        // device, from the blkio isolator's `devices` (keyed `MAJ:MIN`, with
        // the kernel's name when sysfs knows it).
        let blkio = all().flat_map(|c| {
            let devices = c
                .usage
                .get("blkio")
                .and_then(|b| b.get("devices"))
                .and_then(Value::as_object);
            devices.into_iter().flatten().flat_map(move |(number, io)| {
                let (major, minor) = number.split_once(':').unwrap_or_default();
                let device = io
                    .get("name")
                    .and_then(Value::as_str)
                    .map(|n| format!("/dev/{n}"))
                    .unwrap_or_default();
                [("Read", "read_bytes"), ("Write", "write_bytes")]
                    .into_iter()
                    .filter_map(move |(operation, key)| {
                        let value = io.get(key)?.as_u64()?;
                        let labels = [
                            ("device", device.clone()),
                            ("major", major.to_string()),
                            ("minor", minor.to_string()),
                            ("operation", operation.to_string()),
                        ];
                        Some(((c.labels.as_slice(), labels), value))
                    })
            })
        });
        family(
            &mut encoder,
            (
                "container_blkio_device_usage",
                "Blkio Device bytes usage",
                MetricType::Counter,
            ),
            blkio,
            counter,
        )?;
        let device = [("device", self.fs_device.as_str())];
        family(
            &mut encoder,
            (
                "container_fs_usage_bytes",
                "Number of bytes that are consumed by the container on this filesystem",
                MetricType::Gauge,
            ),
            all().filter_map(|c| Some(((c.labels.as_slice(), device), c.fs_bytes?))),
            gauge,
        )?;
        family(
            &mut encoder,
            (
                "container_start_time_seconds",
                "Start time of the container since unix epoch in seconds",
                MetricType::Gauge,
            ),
            all().filter_map(|c| Some((c.labels.as_slice(), c.started?))),
            gauge,
        )?;
        family(
            &mut encoder,
            (
                "container_last_seen",
                "Last time a container was seen by the exporter",
                MetricType::Gauge,
            ),
            all().map(|c| (c.labels.as_slice(), self.now)),
            gauge,
        )?;
        type LogFigure = fn(&crate::logs::counters::StreamCounters) -> u64;
        let logs: [(&str, &str, LogFigure); 3] = [
            (
                "berth_log_written_bytes",
                "Bytes of a container's output written to its log files, by stream",
                |c| c.bytes,
            ),
            (
                "berth_log_dropped_bytes",
                "Bytes of a container's output discarded in drop mode because the disk fell behind, by stream",
                |c| c.dropped_bytes,
            ),
            (
                "berth_log_lost_bytes",
                "Bytes of a container's output read but not written (write errors), by stream",
                |c| c.lost_bytes,
            ),
        ];
        for (name, help, figure) in logs {
            let samples = all().flat_map(|c| {
                c.logs.iter().flat_map(move |logs| {
                    [("stdout", &logs.stdout), ("stderr", &logs.stderr)].map(
                        |(stream, counters)| {
                            (
                                (c.labels.as_slice(), [("stream", stream)]),
                                figure(counters),
                            )
                        },
                    )
                })
            });
            family(
                &mut encoder,
                (name, help, MetricType::Counter),
                samples,
                counter,
            )?;
        }
        Ok(())
    }
}
