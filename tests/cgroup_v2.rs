//! On a real cgroup v2 host (the VM job, .ci/v2-vm): the agent's own cgroup
//! stays valid (every ancestor of `cgroup.type` "domain") after it enabled
//! controllers below its delegated cgroup, and a container gets `pids.max`
//! whether or not it asked for a pids limit. Skipped on v1 hosts.

mod common;

use std::path::Path;

use common::{busybox_rootfs, Agent};
use serde_json::json;

fn on_v2(test: &str) -> bool {
    let v2 = berth_cgroups::Hierarchies::detect()
        .is_ok_and(|h| h.mode() == berth_cgroups::CgroupMode::V2);
    if !v2 {
        common::skip_missing_kernel_feature(test, "needs a cgroup v2 host (the .ci/v2-vm job)");
    }
    v2
}

/// `cgroup.type` of `dir` and every cgroup above it, up to the mount.
fn types_up_to_the_mount(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut d = Some(dir);
    while let Some(dir) = d {
        match std::fs::read_to_string(dir.join("cgroup.type")) {
            Ok(kind) => found.push((dir.display().to_string(), kind.trim().to_string())),
            Err(_) => break, // the root cgroup has none
        }
        d = dir.parent();
    }
    found
}

#[test]
fn the_agents_cgroups_stay_domains_and_a_container_gets_pids_max() {
    require_root!();
    if !on_v2("cgroup_v2::the_agents_cgroups_stay_domains") {
        return;
    }
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    agent.launch(json!({
        "id": "c1",
        "command": ["sleep", "300"],
        "rootfs": rootfs,
        "resources": {"cpus": 0.5, "memory": 64u64 << 20},
    }));
    let dir = agent.cgroup_dir("pids", Some("c1"));
    let max = std::fs::read_to_string(dir.join("pids.max"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(!max.trim().is_empty(), "pids.max of {}", dir.display());
    for file in ["cpu.max", "memory.max"] {
        assert!(dir.join(file).exists(), "{} lacks {file}", dir.display());
    }
    let kinds = types_up_to_the_mount(&dir);
    assert!(!kinds.is_empty());
    for (path, kind) in &kinds {
        assert_eq!(kind, "domain", "{path} is {kind}: {kinds:?}");
    }
    // The agent runs in its leaf, not in the cgroup it enabled controllers in.
    let pid = agent.pid().unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let own = own.trim();
    let root_cgroup = own == "0::/";
    assert!(
        root_cgroup || own.ends_with(&format!("/{}", berth_cgroups::AGENT_LEAF)),
        "agent cgroup {own}"
    );
}
