//! Shims started ahead of launches (decision 0043): a launch is handed to
//! an idle shim, the pool refills, an idle shim holds nothing of anybody's
//! and goes with its agent, a dead one is skipped.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::{agent_start_output, eventually, Agent};
use serde_json::json;

/// This agent's pool shims (`berth-shim pool --runtime-dir DIR`), with
/// where their stderr goes: `/dev/null` while idle, the container's
/// `shim.log` once handed a launch.
fn pool_shims(agent: &Agent) -> Vec<(u32, PathBuf)> {
    let needle = format!("pool\0--runtime-dir\0{}\0", agent.runtime_dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .filter_map(|pid| Some((pid, std::fs::read_link(format!("/proc/{pid}/fd/2")).ok()?)))
        .collect()
}

/// The idle ones: detached (their own session; the first process of
/// `berth-shim pool`, about to exit, is not) and logging nowhere yet.
fn idle(agent: &Agent) -> BTreeSet<u32> {
    (pool_shims(agent).into_iter())
        .filter(|(pid, log)| log == &PathBuf::from("/dev/null") && session(*pid) == Some(*pid))
        .map(|(pid, _)| pid)
        .collect()
}

fn session(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn full_pool(agent: &Agent) -> BTreeSet<u32> {
    eventually(Duration::from_secs(10), "two idle shims", || {
        let idle = idle(agent);
        (idle.len() == 2).then_some(idle)
    })
}

/// The pool shim serving container `id`, if any.
fn pooled_shim_of(agent: &Agent, id: &str) -> Option<u32> {
    let log = agent
        .runtime_dir
        .join("containers")
        .join(id)
        .join("shim.log");
    (pool_shims(agent).into_iter())
        .find(|(_, to)| to == &log)
        .map(|(pid, _)| pid)
}

/// SIGKILLs this test's own agent's idle shims `pids` and waits until they
/// are gone.
fn kill_idle(pids: &BTreeSet<u32>) {
    for pid in pids {
        let status = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    eventually(Duration::from_secs(10), "the idle shims to die", || {
        pids.iter().all(|pid| !alive(*pid)).then_some(())
    });
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_launch_is_handed_to_an_idle_shim_and_the_pool_refills() {
    require_root!();
    let agent = Agent::start();
    let before = full_pool(&agent);
    agent.launch(json!({"id": "pooled", "command": ["sleep", "300"]}));
    let shim = pooled_shim_of(&agent, "pooled").expect("the container's shim came from the pool");
    assert!(
        before.contains(&shim),
        "shim {shim} was not idle before: {before:?}"
    );
    let after = full_pool(&agent);
    assert!(!after.contains(&shim), "{after:?}");

    // Output and the exit code go through a handed-over shim as through a
    // started one.
    agent.launch(json!({"id": "quick", "command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}));
    assert_eq!(agent.wait("quick")["exit_code"], 3);
    assert_eq!(agent.stdout("quick"), "out\n");
    let log = agent.runtime_dir.join("containers/pooled/shim.log");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("shim for container pooled started (idle since its start)"),
        "{log}"
    );
    for id in ["pooled", "quick"] {
        let deleted = agent.api("DELETE", &format!("/v1/containers/{id}?force=true"), None);
        assert_eq!(deleted.status, 204);
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

/// The refill forks a successor of an idle shim instead of exec'ing the
/// shim binary (decision 0045). A forked process keeps its parent's
/// auxiliary vector, and with address space randomization every exec gets
/// its own (`AT_RANDOM`, `AT_PHDR`...): the shims of one lineage all show
/// the first one's.
#[test]
fn the_pool_refills_by_forking_an_idle_shim() {
    require_root!();
    let randomized = std::fs::read_to_string("/proc/sys/kernel/randomize_va_space").unwrap();
    if randomized.trim() == "0" {
        common::skip(
            "the_pool_refills_by_forking_an_idle_shim",
            "address space randomization is off",
        );
        return;
    }
    let agent = Agent::start();
    let auxv = |pid: u32| std::fs::read(format!("/proc/{pid}/auxv")).unwrap();
    let first = full_pool(&agent);
    let mut seen = Vec::new();
    for i in 0..4 {
        let id = format!("lineage{i}");
        agent.launch(json!({"id": id, "command": ["sleep", "300"]}));
        seen.push(pooled_shim_of(&agent, &id).expect("a pooled shim"));
        full_pool(&agent);
    }
    seen.extend(first.iter().copied());
    seen.extend(idle(&agent));
    let lineage = auxv(seen[0]);
    for pid in &seen {
        assert_eq!(auxv(*pid), lineage, "shim {pid} was exec'd, not forked");
    }
    // With no idle shim left to fork, the refill execs: a new lineage.
    let idle_now = idle(&agent);
    kill_idle(&idle_now);
    // The launch finds them dead and starts its own; the refill, with no
    // live idle shim to ask, execs.
    agent.launch(json!({"id": "lineage4", "command": ["true"]}));
    let fresh = eventually(Duration::from_secs(10), "a fresh pool", || {
        let idle = idle(&agent);
        (idle.len() == 2 && idle.is_disjoint(&idle_now)).then_some(idle)
    });
    let fresh: Vec<Vec<u8>> = fresh.iter().map(|pid| auxv(*pid)).collect();
    assert_ne!(fresh[0], lineage, "an exec'd shim looks forked");
    assert_eq!(
        fresh[0], fresh[1],
        "the second of the fresh pool was exec'd too"
    );
    for i in 0..5 {
        let deleted = agent.api(
            "DELETE",
            &format!("/v1/containers/lineage{i}?force=true"),
            None,
        );
        assert_eq!(deleted.status, 204);
    }
}

/// No more than 33 shims (an exec'd one and 32 successors) share one
/// address space layout and stack canary: then the refill execs afresh.
#[test]
fn a_lineage_ends_after_32_forks() {
    require_root!();
    let agent = Agent::start();
    let mut lineages: std::collections::BTreeMap<Vec<u8>, BTreeSet<u32>> = Default::default();
    for i in 0..45 {
        for pid in full_pool(&agent) {
            if let Ok(auxv) = std::fs::read(format!("/proc/{pid}/auxv")) {
                lineages.entry(auxv).or_default().insert(pid);
            }
        }
        let id = format!("short{i}");
        agent.launch(json!({"id": id, "command": ["true"]}));
        agent.wait(&id);
        let deleted = agent.api("DELETE", &format!("/v1/containers/{id}"), None);
        assert_eq!(deleted.status, 204);
    }
    let mut sizes: Vec<usize> = lineages.values().map(|l| l.len()).collect();
    sizes.sort_unstable();
    assert!(
        sizes.len() >= 2,
        "one lineage served 45 launches: {sizes:?}"
    );
    assert!(sizes.iter().all(|n| *n <= 33), "{sizes:?}");
    // The exec'd shim that follows an ended lineage starts the next one:
    // refills fork again, instead of exec'ing a shim for every launch.
    assert!(
        sizes.len() <= 3 && sizes[sizes.len() - 2] >= 8,
        "lineages after the first ended: {sizes:?}"
    );
}

/// A burst of launches, more than the pool keeps idle, is served by forks
/// of the pool's shims: the last idle shim is kept back as a parent, and a
/// launch that finds no other takes a successor of it instead of exec'ing
/// a shim on its own critical path (decision 0056).
#[test]
fn a_burst_of_launches_is_served_by_forks_not_execs() {
    require_root!();
    let agent = Agent::start();
    let pool = full_pool(&agent);
    let auxv = |pid: u32| std::fs::read(format!("/proc/{pid}/auxv")).unwrap();
    let lineage = auxv(*pool.first().unwrap());
    let ids: Vec<String> = (0..6).map(|i| format!("burst{i}")).collect();
    std::thread::scope(|scope| {
        for id in &ids {
            let agent = &agent;
            scope.spawn(move || agent.launch(json!({"id": id, "command": ["sleep", "300"]})));
        }
    });
    for id in &ids {
        // A shim a launch exec'd itself runs `berth-shim` with the launch's
        // arguments, not `pool`: none of these is one.
        let shim = pooled_shim_of(&agent, id)
            .unwrap_or_else(|| panic!("{id}'s shim was exec'd by its launch"));
        assert_eq!(auxv(shim), lineage, "{id}'s shim {shim} was exec'd");
    }
    for id in &ids {
        let deleted = agent.api("DELETE", &format!("/v1/containers/{id}?force=true"), None);
        assert_eq!(deleted.status, 204);
    }
}

#[test]
fn prepared_mounts_pass_through_the_handover() {
    require_root!();
    let agent = Agent::start();
    full_pool(&agent);
    // A secret is a tmpfs the agent prepares and passes as a descriptor.
    agent.launch(json!({
        "id": "secretive",
        "command": ["cat", "/run/secrets/db"],
        "secrets": [{"name": "db", "value_base64": "c2VzYW1l"}],
    }));
    assert_eq!(agent.wait("secretive")["exit_code"], 0);
    assert_eq!(agent.stdout("secretive"), "sesame");
}

#[test]
fn idle_shims_hold_nothing_and_go_with_their_agent() {
    require_root!();
    let mut agent = Agent::start();
    agent.launch(json!({"id": "survivor", "command": ["sleep", "300"]}));
    let survivor = eventually(Duration::from_secs(10), "the survivor's pool shim", || {
        pooled_shim_of(&agent, "survivor")
    });
    let idle = full_pool(&agent);
    for pid in &idle {
        // Its stdio is /dev/null, fd 3 its socket to the agent, nothing
        // else: no descriptor of the agent's or of an earlier launch.
        let mut fds: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .map(|e| {
                let fd = e.file_name().to_str().unwrap().parse().unwrap();
                (
                    fd,
                    std::fs::read_link(e.path()).unwrap().display().to_string(),
                )
            })
            .collect();
        fds.sort();
        assert_eq!(fds.len(), 4, "idle shim {pid}: {fds:?}");
        assert!(fds[..3].iter().all(|(_, to)| to == "/dev/null"), "{fds:?}");
        assert!(fds[3].0 == 3 && fds[3].1.starts_with("socket:"), "{fds:?}");
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
            PathBuf::from("/")
        );
    }

    agent.kill_agent();
    eventually(
        Duration::from_secs(10),
        "the idle shims to exit with their agent",
        || idle.iter().all(|pid| !alive(*pid)).then_some(()),
    );
    assert!(
        alive(survivor),
        "the running container's shim went with the agent"
    );
    agent.start_again();
    assert_eq!(
        agent.api("GET", "/v1/containers/survivor", None).body["state"],
        "running"
    );
    let deleted = agent.api("DELETE", "/v1/containers/survivor?force=true", None);
    assert_eq!(deleted.status, 204);
}

#[test]
fn a_dead_idle_shim_is_skipped_and_replaced() {
    require_root!();
    let agent = Agent::start();
    let idle = full_pool(&agent);
    kill_idle(&idle);
    agent.launch(json!({"id": "after", "command": ["sh", "-c", "echo fine"]}));
    assert_eq!(agent.wait("after")["exit_code"], 0);
    assert_eq!(agent.stdout("after"), "fine\n");
    let refilled = full_pool(&agent);
    assert!(refilled.is_disjoint(&idle), "{refilled:?} {idle:?}");
}

#[test]
fn idle_shims_zero_starts_none_and_a_launch_execs_its_shim() {
    require_root!();
    let agent = Agent::start_with_config("[container]\nidle_shims = 0\n");
    agent.launch(json!({"id": "plain", "command": ["sh", "-c", "echo plain"]}));
    assert_eq!(agent.wait("plain")["exit_code"], 0);
    assert_eq!(agent.stdout("plain"), "plain\n");
    assert!(pool_shims(&agent).is_empty(), "{:?}", pool_shims(&agent));
}

#[test]
fn too_many_idle_shims_are_refused_at_start() {
    let (_dir, out) = agent_start_output(Some("[container]\nidle_shims = 65\n"), [] as [&str; 0]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("container.idle_shims must be at most 64"),
        "{stderr}"
    );
}
