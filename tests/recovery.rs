//! Containers outlive the agent: restarts, crashes, reboots, and garbage
//! collection of sandboxes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{eventually, Agent};
use serde_json::{json, Value};

/// A container that prints a counter every 50 ms.
fn counter(id: &str) -> Value {
    json!({"id": id, "command": ["sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"]})
}

/// Checks that a counter's output is 0, 1, 2, ... with nothing missing and
/// returns how many lines it printed.
fn contiguous_count(output: &str) -> usize {
    let mut n = 0;
    for line in output.lines() {
        assert_eq!(line, n.to_string(), "line {n} of the counter's output");
        n += 1;
    }
    n
}

fn ids(agent: &Agent) -> Vec<String> {
    let list = agent.api("GET", "/v1/containers", None).body;
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// This agent's shims: processes whose command line gives a state dir in
/// its runtime dir.
fn shims_of(agent: &Agent) -> Vec<u32> {
    // Started for its launch (`--state-dir` on its command line), or taken
    // from the idle pool (`pool --runtime-dir`) and logging into a
    // container's state dir since its handover.
    let started = format!("--state-dir\0{}", agent.runtime_dir.display());
    let pooled = format!("pool\0--runtime-dir\0{}\0", agent.runtime_dir.display());
    let state_dirs = agent.runtime_dir.join("containers");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .unwrap_or_default();
            cmdline.contains(&started)
                || (cmdline.contains(&pooled)
                    && std::fs::read_link(format!("/proc/{pid}/fd/2"))
                        .is_ok_and(|log| log.starts_with(&state_dirs)))
        })
        .collect()
}

#[test]
fn fifty_running_containers_survive_an_agent_restart() {
    require_root!();
    let mut agent = Agent::start();
    let names: Vec<String> = (0..50).map(|i| format!("c{i:02}")).collect();
    for name in &names {
        agent.launch(counter(name));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before: Vec<usize> = names
        .iter()
        .map(|n| agent.stdout(n).lines().count())
        .collect();
    agent.kill_agent();
    // Output written while no agent runs must not be lost.
    std::thread::sleep(Duration::from_secs(1));
    agent.start_again();

    let list = agent.api("GET", "/v1/containers", None).body;
    assert_eq!(list.as_array().unwrap().len(), 50);
    for (name, lines_before) in names.iter().zip(before) {
        let container = agent
            .api("GET", &format!("/v1/containers/{name}"), None)
            .body;
        assert_eq!(container["state"], "running", "{name}: {container}");
        let stats = agent.api("GET", &format!("/v1/containers/{name}/stats"), None);
        assert_eq!(stats.status, 200, "{name} stats after restart");
        // Output goes on without a gap (on a slow machine: give it time).
        common::eventually(Duration::from_secs(60), "output to go on", || {
            (contiguous_count(&agent.stdout(name)) >= lines_before + 8).then_some(())
        });
        assert_eq!(
            agent
                .api("POST", &format!("/v1/containers/{name}/kill"), None)
                .status,
            204
        );
        let ended = agent.wait(name);
        assert_eq!(ended["reason"], "killed");
        assert_eq!(ended["signal"], 9);
        let printed = contiguous_count(&agent.stdout(name));
        // 1 s at one line per 50 ms (generously: the machine is busy).
        assert!(
            printed >= lines_before + 8,
            "{name}: {printed} lines, {lines_before} before the agent went down"
        );
        assert_eq!(
            agent
                .api("DELETE", &format!("/v1/containers/{name}"), None)
                .status,
            204
        );
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
    eventually(Duration::from_secs(5), "every shim to exit", || {
        shims_of(&agent).is_empty().then_some(())
    });
}

#[test]
fn a_crash_during_a_burst_of_launches_leaves_nothing_unaccounted_for() {
    require_root!();
    let mut agent = Agent::start();
    let launches: Vec<std::process::Child> = (0..20)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
                .arg("--socket")
                .arg(&agent.socket)
                .args([
                    "run",
                    "-d",
                    "--name",
                    &format!("burst{i}"),
                    "--cpus",
                    "0.1",
                    "--memory",
                    "32M",
                    "--",
                    "sleep",
                    "300",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Mid-burst: some launches done, some half-way, some not begun.
    std::thread::sleep(Duration::from_millis(120));
    agent.kill_agent();
    for mut launch in launches {
        let _ = launch.wait();
    }
    agent.start_again();

    // Every container the agent knows runs and is managed; nothing else is
    // left: no cgroup, shim or container process it does not know.
    let known: BTreeSet<String> = ids(&agent).into_iter().collect();
    for id in &known {
        let container = agent.api("GET", &format!("/v1/containers/{id}"), None).body;
        assert_eq!(container["state"], "running", "{container}");
    }
    for controller in ["cpu", "cpuacct", "memory"] {
        let dir = agent.cgroup_dir(controller, None);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                let name = entry.file_name().into_string().unwrap();
                assert!(known.contains(&name), "leaked {controller} cgroup {name}");
            }
        }
    }
    eventually(
        Duration::from_secs(10),
        "the shims of destroyed launches to exit",
        || {
            let shims = shims_of(&agent);
            (shims.len() == known.len()).then_some(())
        },
    );
    for id in &known {
        assert_eq!(
            agent
                .api("DELETE", &format!("/v1/containers/{id}?force=true"), None)
                .status,
            204
        );
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
    let sandboxes = agent.container_dirs();
    assert!(sandboxes.is_empty(), "{sandboxes:?}");
}

#[test]
fn an_exit_while_the_agent_is_down_is_reported_after_restart() {
    require_root!();
    let mut agent = Agent::start();
    agent.launch(json!({"id": "quitter", "command": ["sh", "-c", "sleep 0.5; exit 7"]}));
    agent.launch(json!({"id": "hog", "command": ["sh", "-c", "sleep 0.5; head -c 512M /dev/zero | tail"], "resources": {"memory": 64u64 << 20}}));
    agent.kill_agent();
    std::thread::sleep(Duration::from_secs(3));
    agent.start_again();
    let quitter = agent.wait("quitter");
    assert_eq!(quitter["exit_code"], 7);
    assert_eq!(quitter["reason"], "exited");
    let hog = agent.wait("hog");
    assert_eq!(hog["reason"], "memory-limit", "{hog}");
    assert!(hog["limitation"]["message"]
        .as_str()
        .unwrap()
        .contains("64.0 MiB"));
    // Cleaned up after recovery, in every hierarchy.
    agent.wait_cgroups_gone("hog");
}

#[test]
fn a_recycled_pid_does_not_fool_recovery() {
    require_root!();
    let mut agent = Agent::start();
    let container = agent.launch(json!({"id": "victim", "command": ["sleep", "300"]}));
    let pid = container["pid"].as_u64().unwrap() as i32;
    agent.kill_agent();
    let record_path = agent.runtime_dir.join("containers/victim/container.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let shim = record["shim"]["pid"].as_u64().unwrap() as i32;
    // The shim and its container die while no agent watches...
    // SAFETY: kill(2) of this test's own container's shim and process.
    unsafe {
        libc::kill(shim, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    eventually(Duration::from_secs(5), "the shim to go", || {
        (!Path::new(&format!("/proc/{shim}")).exists()).then_some(())
    });
    // ...and an unrelated process gets their pids.
    let mut stranger = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    record["shim"]["pid"] = stranger.id().into();
    record["pid"] = stranger.id().into();
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    agent.start_again();

    let ended = agent.wait("victim");
    assert_eq!(ended["state"], "exited");
    assert_eq!(ended["reason"], "shim-lost", "{ended}");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "recovery must not signal a stranger"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn after_a_reboot_containers_are_reported_agent_lost_with_their_sandboxes() {
    require_root!();
    let mut agent = Agent::start();
    let container =
        agent.launch(json!({"id": "survivor", "command": ["sh", "-c", "echo before; sleep 300"]}));
    let pid = container["pid"].as_u64().unwrap() as i32;
    let sandbox = container["sandbox"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(5), "output", || {
        agent.stdout("survivor").contains("before").then_some(())
    });
    agent.kill_agent();
    // A reboot: processes and the runtime dir (a tmpfs) are gone.
    let record: Value = serde_json::from_slice(
        &std::fs::read(agent.runtime_dir.join("containers/survivor/container.json")).unwrap(),
    )
    .unwrap();
    // SAFETY: kill(2) of this test's own container's shim.
    unsafe {
        libc::kill(
            record["shim"]["pid"].as_u64().unwrap() as i32,
            libc::SIGKILL,
        );
        libc::kill(pid, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_dir_all(&agent.runtime_dir).unwrap();
    agent.start_again();

    let lost = agent.api("GET", "/v1/containers/survivor", None).body;
    assert_eq!(lost["state"], "exited");
    assert_eq!(lost["reason"], "agent-lost");
    assert!(
        Path::new(&sandbox).exists(),
        "the sandbox is kept for inspection"
    );
    assert_eq!(
        lost["log_dir"],
        agent.log_dir("survivor").display().to_string()
    );
    assert!(agent.log_dir("survivor").join("stdout.idx").exists());
    assert!(agent.stdout("survivor").contains("before"));
    assert_eq!(
        agent.api("DELETE", "/v1/containers/survivor", None).status,
        204
    );
    assert!(!Path::new(&sandbox).exists());
    assert!(!agent.container_dir("survivor").exists());
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn after_a_power_loss_the_records_journal_keeps_each_containers_last_record() {
    require_root!();
    let mut agent = Agent::start();
    let records = agent.work_dir.join("records");
    let record_says = |id: &str, what: &str| {
        std::fs::read_to_string(records.join(format!("{id}.json")))
            .is_ok_and(|record| record.contains(what))
    };
    agent.launch(json!({"id": "ended", "command": ["sh", "-c", "exit 7"]}));
    assert_eq!(agent.wait("ended")["exit_code"], 7);
    let running = agent.launch(json!({"id": "running", "command": ["sleep", "300"]}));
    agent.launch(json!({"id": "removed", "command": ["true"]}));
    agent.wait("removed");
    eventually(Duration::from_secs(5), "the ends recorded", || {
        (record_says("ended", "\"exited\"") && record_says("removed", "\"exited\"")).then_some(())
    });
    let removed_record = std::fs::read(records.join("removed.json")).unwrap();
    assert_eq!(
        agent.api("DELETE", "/v1/containers/removed", None).status,
        204
    );
    agent.kill_agent();
    let state: Value = serde_json::from_slice(
        &std::fs::read(agent.runtime_dir.join("containers/running/container.json")).unwrap(),
    )
    .unwrap();
    let pids = [
        state["shim"]["pid"].as_u64().unwrap() as i32,
        running["pid"].as_u64().unwrap() as i32,
    ];
    for pid in pids {
        // SAFETY: kill(2) of this test's own container's shim and process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    eventually(
        Duration::from_secs(5),
        "the container's processes gone",
        || {
            pids.iter()
                .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
                .then_some(())
        },
    );
    // The power loss: no record file's write was flushed, so none reached
    // the disk, nor did the removal's unlink; the runtime dir (a tmpfs) is
    // gone with the reboot. Only the journal's flushed frames are left.
    std::fs::remove_file(records.join("ended.json")).unwrap();
    std::fs::remove_file(records.join("running.json")).unwrap();
    std::fs::write(records.join("removed.json"), &removed_record).unwrap();
    std::fs::remove_dir_all(&agent.runtime_dir).unwrap();
    agent.start_again();

    let ended = agent.api("GET", "/v1/containers/ended", None).body;
    assert_eq!(ended["state"], "exited");
    assert_eq!(ended["exit_code"], 7);
    assert_eq!(ended["reason"], "exited");
    let lost = agent.api("GET", "/v1/containers/running", None).body;
    assert_eq!(lost["state"], "exited");
    assert_eq!(lost["reason"], "agent-lost");
    assert_eq!(
        agent.api("GET", "/v1/containers/removed", None).status,
        404,
        "a removed container stays removed"
    );
    assert!(!records.join("removed.json").exists());
    for id in ["ended", "running"] {
        assert_eq!(
            agent
                .api("DELETE", &format!("/v1/containers/{id}"), None)
                .status,
            204
        );
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn shutdown_leaves_containers_running_unless_configured_to_stop_them() {
    require_root!();
    let mut agent = Agent::start();
    let container = agent.launch(json!({"id": "stays", "command": ["sleep", "300"]}));
    let pid = container["pid"].as_u64().unwrap();
    assert!(agent.stop_agent().success());
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "SIGTERM to the agent must not stop containers"
    );
    agent.start_again();
    assert_eq!(
        agent.api("GET", "/v1/containers/stays", None).body["state"],
        "running"
    );

    let mut stopping =
        Agent::start_with_config("[shutdown]\nstop_containers = true\ngrace_seconds = 1.0\n");
    stopping.launch(json!({"id": "polite", "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]}));
    stopping.launch(json!({"id": "stubborn", "command": ["sleep", "300"]}));
    assert!(stopping.stop_agent().success());
    stopping.start_again();
    let polite = stopping.wait("polite");
    assert_eq!(polite["exit_code"], 0, "{polite}");
    let stubborn = stopping.wait("stubborn");
    assert_eq!(
        stubborn["signal"], 9,
        "killed after the grace period: {stubborn}"
    );
}

#[test]
fn gc_removes_exactly_the_expired_sandboxes() {
    require_root!();
    // "fresh" must still be younger than the delay when gc runs: a slow
    // machine gets a longer delay.
    let delay = 2 * common::time_scale();
    let agent = Agent::start_with_config(&format!(
        "[gc]\ndelay_seconds = {delay}.0\ndisk_headroom = 0.0\ninterval_seconds = 3600.0\n"
    ));
    for id in ["old1", "old2"] {
        agent.launch(json!({"id": id, "command": ["true"]}));
        agent.wait(id);
    }
    agent.launch(json!({"id": "running", "command": ["sleep", "300"]}));
    std::thread::sleep(Duration::from_secs(delay.into()) + Duration::from_millis(500));
    agent.launch(json!({"id": "fresh", "command": ["true"]}));
    agent.wait("fresh");
    let out = agent.berth(&["gc"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("removed 2"), "{text}");
    assert!(text.contains("old1") && text.contains("old2"), "{text}");
    let remaining: BTreeSet<String> = ids(&agent).into_iter().collect();
    assert_eq!(
        remaining,
        BTreeSet::from(["fresh".to_string(), "running".to_string()])
    );
    assert!(!agent.work_dir.join("containers/old1").exists());
    assert!(agent.work_dir.join("containers/fresh").exists());
}

/// A small loop-mounted filesystem, unmounted and detached on drop.
struct LoopFs {
    dir: std::path::PathBuf,
}

impl LoopFs {
    fn new(dir: &Path, size_mib: u32) -> LoopFs {
        let image = dir.join("work.img");
        let mount = dir.join("work");
        std::fs::create_dir_all(&mount).unwrap();
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(u64::from(size_mib) << 20).unwrap();
        let mkfs = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .status()
            .unwrap();
        assert!(mkfs.success());
        let status = std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount)
            .status()
            .unwrap();
        assert!(status.success());
        LoopFs { dir: mount }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-d")
            .arg(&self.dir)
            .status();
    }
}

#[test]
fn a_filling_disk_shortens_how_long_sandboxes_stay() {
    require_root!();
    let scratch = tempfile::tempdir().unwrap();
    let fs = LoopFs::new(scratch.path(), 64);
    let work_dir = fs.dir.join("berth");
    // A week's delay with 30% headroom: on an almost empty disk sandboxes
    // stay days; past 70% used they go at once.
    let agent = Agent::start_in(
        &work_dir,
        "[gc]\ndelay_seconds = 604800.0\ndisk_headroom = 0.3\ninterval_seconds = 3600.0\n",
    );
    agent.launch(json!({"id": "ended", "command": ["true"]}));
    agent.wait("ended");
    let report: Value = serde_json::from_slice(&agent.berth(&["gc", "--json"]).stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 0, "{report}");
    assert!(
        report["max_age_seconds"].as_f64().unwrap() > 3600.0,
        "{report}"
    );

    // Fill the disk to ~80%.
    let filler = fs.dir.join("filler");
    let status = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=52", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let report: Value = serde_json::from_slice(&agent.berth(&["gc", "--json"]).stdout).unwrap();
    assert!(report["disk_usage"].as_f64().unwrap() > 0.7, "{report}");
    assert_eq!(report["max_age_seconds"], 0.0);
    assert_eq!(report["removed"][0]["id"], "ended", "{report}");
    assert!(!work_dir.join("containers/ended").exists());
}
