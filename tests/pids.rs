//! The pids isolator with real containers: a fork storm stops at the
//! limit, the agent's default applies, usage and updates work.

mod common;

use std::time::{Duration, Instant};

use common::{busybox_rootfs, eventually, Agent};
use serde_json::json;

fn pids_file(agent: &Agent, id: &str, file: &str) -> String {
    let path = agent.cgroup_dir("pids", Some(id)).join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn stderr_of(agent: &Agent, id: &str) -> String {
    let answer = agent.api(
        "GET",
        &format!("/v1/containers/{id}/logs?stream=stderr"),
        None,
    );
    String::from_utf8_lossy(&answer.raw).into_owned()
}

#[test]
fn a_fork_storm_of_6000_stops_at_the_limit() {
    require_root!();
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    const LIMIT: u64 = 300;
    // The storm runs in a child shell, which dies at its first failed fork
    // (busybox sh cannot go on without one); pid 1 reports and stays.
    let script = "sh -c 'i=0; while [ $i -lt 6000 ]; do sleep 300 & i=$((i+1)); done; echo all-6000-started'; \
                  echo storm-ended; exec sleep 300";
    agent.launch(json!({
        "id": "storm",
        "command": ["sh", "-c", script],
        "rootfs": rootfs,
        "resources": {"pids_limit": LIMIT},
    }));
    assert_eq!(pids_file(&agent, "storm", "pids.max"), LIMIT.to_string());
    let started = Instant::now();
    eventually(Duration::from_secs(60), "the storm to end", || {
        agent.stdout("storm").contains("storm-ended").then_some(())
    });
    eprintln!(
        "storm stopped after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let stdout = agent.stdout("storm");
    assert!(!stdout.contains("all-6000-started"), "{stdout}");
    let err = stderr_of(&agent, "storm");
    assert!(
        err.contains("Resource temporarily unavailable"),
        "EAGAIN expected: {err}"
    );
    let current: u64 = pids_file(&agent, "storm", "pids.current").parse().unwrap();
    assert!(
        current <= LIMIT && current > LIMIT / 2,
        "pids.current {current}"
    );

    // The API's usage agrees, and counts the refused forks.
    let stats = agent.api("GET", "/v1/containers/storm/stats", None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let pids = &stats.body["isolators"]["pids"];
    assert_eq!(pids["limit"], LIMIT);
    assert!(pids["current"].as_u64().unwrap() <= LIMIT, "{pids}");
    assert!(pids["limit_hits"].as_u64().unwrap() >= 1, "{pids}");

    // The agent still answers quickly and launches.
    let t0 = Instant::now();
    agent.launch(json!({"id": "after", "command": ["true"]}));
    agent.wait("after");
    eprintln!(
        "launch and wait during the storm: {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(t0.elapsed() < Duration::from_secs(5));

    // Kill it; the kernel reaps every task and the cgroup goes.
    let dir = agent.cgroup_dir("pids", Some("storm"));
    assert_eq!(
        agent
            .api("DELETE", "/v1/containers/storm?force=true", None)
            .status,
        204
    );
    eventually(Duration::from_secs(30), "the storm's cgroup to go", || {
        (!dir.exists()).then_some(())
    });
}

#[test]
fn the_default_limit_applies_and_updates_and_stats_show_it() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "plain", "command": ["sh", "-c", "sleep 300 & sleep 300"]}));
    assert_eq!(pids_file(&agent, "plain", "pids.max"), "4096");
    // sh and two sleeps (or two sleeps, if sh execs the last one).
    let current: u64 = eventually(Duration::from_secs(10), "the sleeps to start", || {
        let n: u64 = pids_file(&agent, "plain", "pids.current").parse().ok()?;
        (n >= 2).then_some(n)
    });
    let out = agent.berth(&["stats", "--no-stream", "--json", "plain"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The count may still move (sh forking its last sleep): the stats agree
    // with the file once it settles.
    let settled = eventually(
        Duration::from_secs(10),
        "stats to agree with pids.current",
        || {
            let out = agent.berth(&["stats", "--no-stream", "--json", "plain"]);
            let stats: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let file: u64 = pids_file(&agent, "plain", "pids.current").parse().ok()?;
            (stats[0]["isolators"]["pids"]["current"] == file && file >= current).then_some(file)
        },
    );
    assert_eq!(stats[0]["isolators"]["pids"]["limit"], 4096);
    let table = agent.berth(&["stats", "--no-stream", "plain"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.lines().next().unwrap().ends_with("PIDS"), "{table}");
    assert!(table.contains(&format!("{settled} / 4096")), "{table}");

    let out = agent.berth(&["update", "plain", "--pids-limit", "50"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pids_file(&agent, "plain", "pids.max"), "50");
    let container = agent.api("GET", "/v1/containers/plain", None).body;
    assert_eq!(container["resources"]["pids_limit"], 50);

    // No limit is refused unless the agent allows it; nothing changes.
    for body in [json!({"pids_limit": 0}), json!({"pids_limit": 1u64 << 40})] {
        let answer = agent.api("PATCH", "/v1/containers/plain/resources", Some(body));
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(answer.body.to_string().contains("resources.pids_limit"));
    }
    assert_eq!(pids_file(&agent, "plain", "pids.max"), "50");
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"command": ["true"], "resources": {"pids_limit": 0}})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(answer.body.to_string().contains("resources.pids_limit"));
}

#[test]
fn the_agent_default_limit_is_configurable() {
    require_root!();
    let agent =
        Agent::start_with_config("[pids]\ndefault_limit = \"max\"\nallow_unlimited = true\n");
    agent.launch(json!({"id": "open", "command": ["sleep", "300"]}));
    assert_eq!(pids_file(&agent, "open", "pids.max"), "max");
    let stats = agent.api("GET", "/v1/containers/open/stats", None).body;
    assert_eq!(stats["isolators"]["pids"]["limit"], "max");
    agent.launch(
        json!({"id": "capped", "command": ["sleep", "300"], "resources": {"pids_limit": 7}}),
    );
    assert_eq!(pids_file(&agent, "capped", "pids.max"), "7");
    drop(agent);

    let agent = Agent::start_with_config("[pids]\ndefault_limit = 123\n");
    agent.launch(json!({"id": "c", "command": ["sleep", "300"]}));
    assert_eq!(pids_file(&agent, "c", "pids.max"), "123");
}

#[test]
fn limits_survive_an_agent_restart_and_cgroups_go_with_the_container() {
    require_root!();
    let mut agent = Agent::start();
    agent.launch(json!({
        "id": "kept",
        "command": ["sleep", "300"],
        "resources": {"pids_limit": 77, "devices": [{"host": "/dev/null", "container": "/dev/n2", "access": "r"}]},
    }));
    let devices = agent.cgroup_dir("devices", Some("kept"));
    // v1 lists the rules in a file; v2 has an eBPF program instead.
    let v1 = common::cgroup::mode_name() == "v1";
    let list_before = if v1 {
        std::fs::read_to_string(devices.join("devices.list")).unwrap()
    } else {
        String::new()
    };
    assert!(!v1 || list_before.contains("c 1:3 r"), "{list_before}");
    agent.restart();
    let stats = agent.api("GET", "/v1/containers/kept/stats", None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats.body["isolators"]["pids"]["limit"], 77);
    if v1 {
        assert_eq!(
            std::fs::read_to_string(devices.join("devices.list")).unwrap(),
            list_before
        );
    }
    let pids = agent.cgroup_dir("pids", Some("kept"));
    assert_eq!(
        agent
            .api("DELETE", "/v1/containers/kept?force=true", None)
            .status,
        204
    );
    eventually(Duration::from_secs(10), "both cgroups to go", || {
        (!pids.exists() && !devices.exists()).then_some(())
    });
}
