//! `GET /metrics` end to end on a real agent: the cAdvisor series beyond
//! the basic ones (working set, cpu shares, blkio per device, fs usage,
//! start time, last seen, container labels) and berth's own (containers by
//! state, launch latency, log bytes, API requests by status) exist with sane
//! values, and `promtool check metrics` accepts the text. The CPU counter's
//! growth at a quota and a real Prometheus scraping over mutual TLS are in
//! tests/remote_api.rs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{eventually, Agent};
use serde_json::json;

const MIB: f64 = 1048576.0;

/// Waits for the sandbox's `go`, writes 5 MiB with O_DIRECT (and fsync),
/// says so on stdout, then stays up (metrics are for running containers).
const WRITER: &str = "while [ ! -e go ]; do sleep 0.05; done; \
    dd if=/dev/zero of=big bs=1M count=5 oflag=direct conv=fsync 2>/dev/null || echo dd failed; \
    echo written; exec sleep 300";

fn scrape(agent: &Agent) -> String {
    let answer = agent.api("GET", "/metrics", None);
    assert_eq!(answer.status, 200);
    String::from_utf8(answer.raw).unwrap()
}

/// The values of `metric`'s samples whose labels include every one of
/// `labels` (`key="value"`).
fn samples(text: &str, metric: &str, labels: &[&str]) -> Vec<f64> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// The one sample of `metric` for container `name` (and `labels`).
fn one(text: &str, metric: &str, name: &str, labels: &[&str]) -> f64 {
    let name = format!("name=\"{name}\"");
    let mut all = vec![name.as_str()];
    all.extend_from_slice(labels);
    let found = samples(text, metric, &all);
    assert_eq!(found.len(), 1, "{metric} {all:?}: {found:?}\n{text}");
    found[0]
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn promtool_accepts(text: &str) {
    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(promtool) = promtool else {
        common::skip(
            "metrics::promtool",
            "no promtool (Debian package prometheus)",
        );
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cadvisor_and_berth_series_have_sane_values() {
    require_root!();
    let agent = Agent::start();
    let before = epoch();
    agent.launch(json!({
        "id": "m1",
        "command": ["sh", "-c", WRITER],
        "resources": {"cpus": 0.5, "memory": 64 * 1024 * 1024},
        "labels": {"app.kind": "web"},
    }));
    let after = epoch();
    let text = scrape(&agent);
    promtool_accepts(&text);

    // Memory: the working set is usage minus inactive file cache.
    let usage = one(&text, "container_memory_usage_bytes", "m1", &[]);
    let working_set = one(&text, "container_memory_working_set_bytes", "m1", &[]);
    assert!(
        working_set > 0.0 && working_set <= usage,
        "{working_set} vs {usage}"
    );
    assert_eq!(one(&text, "container_spec_cpu_shares", "m1", &[]), 512.0);
    assert_eq!(
        one(&text, "container_spec_memory_limit_bytes", "m1", &[]),
        64.0 * MIB
    );
    // Times: started between the request and its answer; seen now.
    let started = one(&text, "container_start_time_seconds", "m1", &[]);
    assert!(
        started >= before - 1.0 && started <= after + 1.0,
        "{before} <= {started} <= {after}"
    );
    let seen = one(&text, "container_last_seen", "m1", &[]);
    assert!((seen - epoch()).abs() < 5.0, "{seen}");
    // cAdvisor's labels, the container's own as container_label_*.
    let line = text
        .lines()
        .find(|l| l.starts_with("container_last_seen{"))
        .unwrap();
    for label in [
        "id=\"/berth/m1\"",
        "image=\"\"",
        "container_label_app_kind=\"web\"",
    ] {
        assert!(line.contains(label), "{label} in {line}");
    }
    assert!(samples(&text, "berth_containers", &["state=\"running\""])[0] >= 1.0);
    assert!(samples(&text, "berth_launch_duration_seconds_count", &[])[0] >= 1.0);
    let fs_before = one(&text, "container_fs_usage_bytes", "m1", &[]);

    // The container writes 5 MiB with O_DIRECT: fs usage grows by it (its
    // figure is at most a few seconds old), blkio counts the writes on the
    // disk (when the work dir is on one), and the log counters count the
    // line it printed.
    std::fs::write(agent.sandbox("m1").join("go"), "").unwrap();
    let out = eventually(Duration::from_secs(60), "the dd to finish", || {
        let out = agent.stdout("m1");
        out.contains("written").then_some(out)
    });
    assert!(!out.contains("dd failed"), "{out}");
    let grown = eventually(Duration::from_secs(30), "fs usage to grow", || {
        let fs = one(&scrape(&agent), "container_fs_usage_bytes", "m1", &[]);
        (fs >= fs_before + 5.0 * MIB).then_some(fs)
    });
    eprintln!("fs usage {fs_before} -> {grown} bytes");
    if berth_isolator_blkio::DeviceNumber::backing(agent.dir.path()).is_some() {
        let written = eventually(Duration::from_secs(10), "blkio to count", || {
            let text = scrape(&agent);
            let written: f64 = samples(
                &text,
                "container_blkio_device_usage_total",
                &["name=\"m1\"", "operation=\"Write\""],
            )
            .iter()
            .sum();
            (written >= 5.0 * MIB).then_some(written)
        });
        eprintln!("blkio Write {written} bytes");
        let text = scrape(&agent);
        let line = text
            .lines()
            .find(|l| l.starts_with("container_blkio_device_usage_total{") && l.contains("Write"))
            .unwrap();
        for label in ["device=\"/dev/", "major=\"", "minor=\""] {
            assert!(line.contains(label), "{label} in {line}");
        }
    } else {
        common::skip(
            "metrics::blkio",
            "the work dir is on no block device: no blkio counts",
        );
    }
    eventually(Duration::from_secs(10), "log bytes to count", || {
        let text = scrape(&agent);
        let written = samples(
            &text,
            "berth_log_written_bytes_total",
            &["name=\"m1\"", "stream=\"stdout\""],
        );
        (written.first().copied().unwrap_or(0.0) >= "written\n".len() as f64).then_some(())
    });

    // Request counts: each answered request, by method and status.
    let count = |text: &str, code: &str, method: &str| {
        samples(
            text,
            "berth_api_requests_total",
            &[&format!("code=\"{code}\""), &format!("method=\"{method}\"")],
        )
        .first()
        .copied()
        .unwrap_or(0.0)
    };
    let text = scrape(&agent);
    let (ok, missing) = (count(&text, "200", "GET"), count(&text, "404", "GET"));
    assert_eq!(agent.api("GET", "/v1/containers/nope", None).status, 404);
    let text = scrape(&agent);
    assert!(count(&text, "200", "GET") > ok, "the scrape before counts");
    assert_eq!(count(&text, "404", "GET"), missing + 1.0);
    assert!(count(&text, "201", "POST") >= 1.0, "the launch");
    promtool_accepts(&text);

    let answer = agent.api("DELETE", "/v1/containers/m1?force=true", None);
    assert!(answer.status < 300, "{:?}", answer.body);
    let text = scrape(&agent);
    assert!(samples(&text, "container_last_seen", &["name=\"m1\""]).is_empty());
}
