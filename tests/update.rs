//! Live resource updates and stats of running containers.

mod common;

use std::time::{Duration, Instant};

use common::Agent;
use serde_json::json;

/// CPUs used by a container over `window`, from its cpu usage counter.
fn measured_cpus(agent: &Agent, id: &str, window: Duration) -> f64 {
    let usage = || {
        let stats = agent.api("GET", &format!("/v1/containers/{id}/stats"), None);
        assert_eq!(stats.status, 200, "{:?}", stats.body);
        stats.body["isolators"]["cpu"]["usage_seconds"]
            .as_f64()
            .unwrap()
    };
    let (start, t0) = (usage(), Instant::now());
    std::thread::sleep(window);
    (usage() - start) / t0.elapsed().as_secs_f64()
}

#[test]
fn raising_a_cpu_limit_raises_measured_usage() {
    require_root!();
    let agent = Agent::start();
    // Two busy loops, so that a 0.8 limit is not capped by a single thread.
    agent.launch(json!({"id": "busy", "command": ["sh", "-c", "(while :; do :; done) & while :; do :; done"], "resources": {"cpus": 0.2}}));
    std::thread::sleep(Duration::from_millis(300));
    let low = measured_cpus(&agent, "busy", Duration::from_secs(2));
    assert!(
        (0.12..=0.28).contains(&low),
        "under 0.2 CPUs measured {low:.3}"
    );

    let out = agent.berth(&["update", "busy", "--cpus", "0.8"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let container = agent.api("GET", "/v1/containers/busy", None).body;
    assert_eq!(container["resources"]["cpus"], 0.8);
    let quota = common::cgroup::read(&agent, "busy", common::cgroup::Knob::CpuQuota);
    assert_eq!(quota, "80000");
    std::thread::sleep(Duration::from_millis(200));
    let high = measured_cpus(&agent, "busy", Duration::from_secs(2));
    // Never above the new cap; clearly above the old one (not "near 0.8":
    // on a loaded or emulated machine two loops may not get 0.8 CPUs).
    assert!(
        high <= 0.95 && high > low * 1.8,
        "under 0.8 CPUs measured {high:.3} (under 0.2: {low:.3})"
    );
}

#[test]
fn an_impossible_memory_update_is_refused_and_changes_nothing() {
    require_root!();
    let agent = Agent::start();
    // Holds 40 MiB of written (so resident) memory until killed. (Not
    // `head | tail`: tail lets go of its buffer when its input ends, so the
    // figure was there only for a moment.)
    agent.launch(json!({"id": "holder", "command": ["/usr/bin/python3", "-c", "import time; held = b'x' * (40 << 20); time.sleep(300)"], "resources": {"memory": 128u64 << 20}}));
    common::eventually(
        Duration::from_secs(30),
        "the container to hold 40 MiB",
        || {
            let stats = agent.api("GET", "/v1/containers/holder/stats", None).body;
            (stats["isolators"]["memory"]["current_bytes"]
                .as_u64()
                .unwrap_or(0)
                > 30 << 20)
                .then_some(())
        },
    );
    let refused = agent.api(
        "PATCH",
        "/v1/containers/holder/resources",
        Some(json!({"memory": 8u64 << 20})),
    );
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "refused");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("usage"),
        "{:?}",
        refused.body
    );
    assert_eq!(
        common::cgroup::read(&agent, "holder", common::cgroup::Knob::MemoryLimit),
        (128u64 << 20).to_string()
    );
    let container = agent.api("GET", "/v1/containers/holder", None).body;
    assert_eq!(container["state"], "running");
    assert_eq!(container["resources"]["memory"], 128u64 << 20);

    // A possible one applies.
    let raised = agent.api(
        "PATCH",
        "/v1/containers/holder/resources",
        Some(json!({"memory": 256u64 << 20})),
    );
    assert_eq!(raised.status, 200, "{:?}", raised.body);
    assert_eq!(
        common::cgroup::read(&agent, "holder", common::cgroup::Knob::MemoryLimit),
        (256u64 << 20).to_string()
    );
}

#[test]
fn bad_updates_name_the_field() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "target", "command": ["sleep", "300"], "isolation": ["cpu"], "resources": {"cpus": 0.5}}));
    let cases = [
        (json!({"cpus": 0}), "resources.cpus", 400),
        (json!({"cpus": 1e9}), "resources.cpus", 400),
        (json!({"memory": 64u64 << 20}), "resources.memory", 400),
        (
            json!({"net_cls_handle": 3}),
            "resources.net_cls_handle",
            400,
        ),
        (json!({"cpu": 1}), "cpu", 400),
    ];
    for (body, field, status) in cases {
        let answer = agent.api(
            "PATCH",
            "/v1/containers/target/resources",
            Some(body.clone()),
        );
        assert_eq!(answer.status, status, "{body}: {:?}", answer.body);
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{body}: {:?}",
            answer.body
        );
    }
    assert_eq!(
        agent
            .api(
                "PATCH",
                "/v1/containers/ghost/resources",
                Some(json!({"cpus": 1}))
            )
            .status,
        404
    );
    let out = agent.berth(&["update", "target"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an update with no flags is a usage error"
    );
    let out = agent.berth(&["update", "target", "--device-write-bps", "/dev/vda"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--device-write-bps"));
    let container = agent.api("GET", "/v1/containers/target", None).body;
    assert_eq!(container["resources"], json!({"cpus": 0.5}));
}

#[test]
fn stats_show_every_running_container() {
    require_root!();
    let agent = Agent::start();
    agent.launch(
        json!({"id": "s1", "command": ["sleep", "300"], "resources": {"memory": 64u64 << 20}}),
    );
    agent.launch(json!({"id": "s2", "command": ["sleep", "300"]}));
    let out = agent.berth(&["stats", "--no-stream"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("s1 ") && l.contains("/ 64.0 MiB")),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("s2 ")), "{text}");
    let json_out = agent.berth(&["stats", "--json", "s1"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(parsed[0]["id"], "s1");
    assert!(
        parsed[0]["isolators"]["memory"]["limit_bytes"]
            .as_u64()
            .unwrap()
            == 64 << 20
    );
    assert!(parsed[0]["cpu_percent"].as_f64().is_some());
    // An ended container keeps the figures it ended with.
    agent.api("POST", "/v1/containers/s2/kill", None);
    agent.wait("s2");
    let ended = agent.api("GET", "/v1/containers/s2/stats", None);
    assert_eq!(ended.status, 200, "{:?}", ended.body);
    assert!(
        ended.body["isolators"]["memory"].is_object(),
        "{:?}",
        ended.body
    );
}
