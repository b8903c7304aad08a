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

/// The delegation point of this test process: its own cgroup v2 directory,
/// or the parent when it is in the agent's leaf.
fn delegation_point() -> std::path::PathBuf {
    common::enter_agent_leaf();
    let h = berth_cgroups::Hierarchies::detect().unwrap();
    let own = h.own_dir(berth_cgroups::Controller::Memory).unwrap();
    if own
        .file_name()
        .is_some_and(|n| n == berth_cgroups::AGENT_LEAF)
    {
        own.parent().unwrap().to_path_buf()
    } else {
        own
    }
}

#[test]
fn an_agent_sharing_its_delegated_cgroup_refuses_and_enables_nothing() {
    require_root!();
    if !on_v2("cgroup_v2::an_agent_sharing_its_delegated_cgroup_refuses") {
        return;
    }
    use std::process::{Command, Stdio};
    // A "service" cgroup holding another process besides the agent.
    let service = delegation_point().join(format!("berth-test-shared-{}", std::process::id()));
    std::fs::create_dir(&service).unwrap();
    let mut other = Command::new("sleep").arg("300").spawn().unwrap();
    std::fs::write(service.join("cgroup.procs"), other.id().to_string()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(&service)
        .arg(env!("CARGO_BIN_EXE_berth"))
        .args(["agent", "--cgroup-root", "berth", "--socket"])
        .arg(&socket)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--runtime-dir")
        .arg(dir.path().join("run"))
        .arg("--shim")
        .arg(env!("CARGO_BIN_EXE_berth-shim"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let ended = common::eventually(
        std::time::Duration::from_secs(20),
        "the agent to listen or exit",
        || {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return Some(false);
            }
            agent.try_wait().unwrap().map(|_| true)
        },
    );
    let text = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    let subtree = std::fs::read_to_string(service.join("cgroup.subtree_control")).unwrap();
    let kind = std::fs::read_to_string(service.join("cgroup.type")).unwrap();
    if !ended {
        let _ = agent.kill();
    }
    let _ = agent.wait();
    let _ = other.kill();
    let _ = other.wait();
    common::eventually(
        std::time::Duration::from_secs(10),
        "the cgroups to go",
        || {
            let _ = std::fs::remove_dir(service.join(berth_cgroups::AGENT_LEAF));
            let _ = std::fs::remove_dir(service.join("berth"));
            std::fs::remove_dir(&service).ok()
        },
    );
    // It says why, names the other process, and left nothing enabled.
    assert!(
        text.contains("processes other than the agent") && text.contains(&other.id().to_string()),
        "{text}"
    );
    assert_eq!(subtree.trim(), "", "{text}");
    assert_eq!(kind.trim(), "domain");
}

#[test]
fn an_agent_in_a_threaded_subtree_says_so_and_enables_nothing() {
    require_root!();
    if !on_v2("cgroup_v2::an_agent_in_a_threaded_subtree") {
        return;
    }
    use std::process::{Command, Stdio};
    // A "service" cgroup that became a thread root: a threaded child.
    let base = delegation_point();
    let _ = std::fs::write(base.join("cgroup.subtree_control"), "+cpu +memory +pids");
    let service = base.join(format!("berth-test-threaded-{}", std::process::id()));
    std::fs::create_dir(&service).unwrap();
    let threads = service.join("threads");
    std::fs::create_dir(&threads).unwrap();
    std::fs::write(threads.join("cgroup.type"), "threaded").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(&service)
        .arg(env!("CARGO_BIN_EXE_berth"))
        .args(["agent", "--cgroup-root", "berth", "--socket"])
        .arg(&socket)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--runtime-dir")
        .arg(dir.path().join("run"))
        .arg("--shim")
        .arg(env!("CARGO_BIN_EXE_berth-shim"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let ended = common::eventually(
        std::time::Duration::from_secs(20),
        "the agent to listen or exit",
        || {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return Some(false);
            }
            agent.try_wait().unwrap().map(|_| true)
        },
    );
    let text = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    let subtree = std::fs::read_to_string(service.join("cgroup.subtree_control")).unwrap();
    if !ended {
        let _ = agent.kill();
    }
    let _ = agent.wait();
    common::eventually(
        std::time::Duration::from_secs(10),
        "the cgroups to go",
        || {
            for d in [berth_cgroups::AGENT_LEAF, "berth", "threads"] {
                let _ = std::fs::remove_dir(service.join(d));
            }
            std::fs::remove_dir(&service).ok()
        },
    );
    assert!(
        text.contains("cgroup.type \"domain threaded\", not \"domain\""),
        "{text}"
    );
    // berth enabled nothing it then abandoned.
    assert_eq!(subtree.trim(), "", "{text}");
}
