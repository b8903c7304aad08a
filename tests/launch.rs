//! Launching real containers end to end through the agent's API and CLI.

mod common;

use std::time::Duration;

use common::{busybox_rootfs, eventually, Agent};
use serde_json::{json, Value};

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn run_prints_output_and_exits_with_the_container_code() {
    require_root!();
    let agent = Agent::start();
    let out = agent.berth(&[
        "run",
        "--name",
        "hello",
        "--",
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 7",
    ]);
    assert_eq!(stdout_of(&out), "hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(7));
    let container = agent.api("GET", "/v1/containers/hello", None).body;
    assert_eq!(container["state"], "exited");
    assert_eq!(container["exit_code"], 7);
    assert_eq!(container["reason"], "exited");
    assert!(container["finished_at"].as_str().is_some());
    assert!(container["started_at"].as_str().is_some());
}

#[test]
fn a_signal_death_is_reported_as_killed_with_128_plus_signal() {
    require_root!();
    let agent = Agent::start();
    // The command is pid 1 of its namespace: the kernel delivers only the
    // signals it handles (and SIGKILL), as with any container runtime.
    agent.launch(json!({"id": "trapper", "command": ["sh", "-c", "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done"]}));
    eventually(Duration::from_secs(10), "the trap to be set", || {
        agent.stdout("trapper").contains("ready").then_some(())
    });
    assert_eq!(
        agent
            .berth(&["kill", "-s", "TERM", "trapper"])
            .status
            .code(),
        Some(0)
    );
    let ended = agent.wait("trapper");
    assert_eq!(ended["exit_code"], 3);
    assert_eq!(ended["reason"], "exited");
    assert!(agent.stdout("trapper").contains("got TERM"));

    let out = agent.berth(&["run", "-d", "--name", "victim", "--", "sleep", "300"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        agent.berth(&["kill", "victim"]).status.code(),
        Some(0),
        "default signal is KILL"
    );
    let wait = agent.berth(&["wait", "victim"]);
    assert_eq!(wait.status.code(), Some(128 + 9));
    let container = agent.api("GET", "/v1/containers/victim", None).body;
    assert_eq!(container["signal"], 9);
    assert_eq!(container["exit_code"], 128 + 9, "as ps and wait say");
    assert_eq!(container["reason"], "killed");
    let inspect = agent.berth(&["inspect", "victim"]);
    let shown: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        (shown["exit_code"].clone(), shown["signal"].clone()),
        (json!(137), json!(9))
    );
    // Killing an ended container is a conflict, not a silent success.
    assert_eq!(
        agent.api("POST", "/v1/containers/victim/kill", None).status,
        409
    );
}

#[test]
fn env_cwd_and_user_apply_and_the_command_is_pid_1() {
    require_root!();
    let agent = Agent::start();
    let out = agent.berth(&[
        "run",
        "--env",
        "GREETING=hello there",
        "--workdir",
        "/tmp",
        "--user",
        "1000:1001",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; id -u; id -g; echo $$; hostname",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout_of(&out).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "hello there");
    assert_eq!(lines[1], "/tmp");
    assert_eq!(lines[2], "1000");
    assert_eq!(lines[3], "1001");
    assert_eq!(lines[4], "1", "the command must be pid 1 of its namespace");
    assert_eq!(lines.len(), 6);
}

#[test]
fn host_root_is_read_only_while_sandbox_and_tmp_are_writable() {
    require_root!();
    let agent = Agent::start();
    let script = "touch /usr/berth-probe 2>/dev/null && echo usr=rw || echo usr=ro; \
                  touch /run/berth-probe 2>/dev/null && echo run=rw || echo run=ro; \
                  echo data > in-sandbox && echo sandbox=rw; \
                  touch /tmp/x && echo tmp=rw; \
                  echo cwd=$(pwd)";
    let container = agent.launch(json!({"id": "ro", "command": ["sh", "-c", script]}));
    let ended = agent.wait("ro");
    assert_eq!(ended["exit_code"], 0);
    let out = agent.stdout("ro");
    assert!(out.contains("usr=ro"), "{out}");
    // /run is the container's own tmpfs, not the host's.
    assert!(out.contains("run=rw"), "{out}");
    assert!(out.contains("sandbox=rw"), "{out}");
    assert!(out.contains("tmp=rw"), "{out}");
    let sandbox = container["sandbox"].as_str().unwrap();
    assert!(out.contains(&format!("cwd={sandbox}")), "{out}");
    assert_eq!(
        std::fs::read_to_string(format!("{sandbox}/in-sandbox")).unwrap(),
        "data\n"
    );
    assert!(!std::path::Path::new("/usr/berth-probe").exists());
    assert!(!std::path::Path::new("/run/berth-probe").exists());
}

#[test]
fn detached_run_kill_wait_and_rm_leave_nothing_behind() {
    require_root!();
    let agent = Agent::start();
    let out = agent.berth(&[
        "run", "-d", "--name", "sleeper", "--cpus", "0.5", "--memory", "64M", "--", "sleep", "300",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_of(&out).trim(), "sleeper");
    let container = agent.api("GET", "/v1/containers/sleeper", None).body;
    assert_eq!(container["state"], "running");
    let pid = container["pid"].as_u64().unwrap() as i32;
    let sandbox = container["sandbox"].as_str().unwrap().to_string();
    let bundle = container["bundle"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&bundle).join("config.json").exists());
    for controller in ["cpu", "cpuacct", "memory"] {
        let procs = std::fs::read_to_string(
            agent
                .cgroup_dir(controller, Some("sleeper"))
                .join("cgroup.procs"),
        )
        .unwrap();
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{controller}: {procs}"
        );
    }
    use common::cgroup::{cpu_shares, read, Knob};
    assert_eq!(read(&agent, "sleeper", Knob::CpuShares), cpu_shares(512));
    assert_eq!(read(&agent, "sleeper", Knob::CpuQuota), "50000");
    assert_eq!(
        read(&agent, "sleeper", Knob::MemoryLimit),
        (64u64 << 20).to_string()
    );

    // ps lists it; rm refuses while it runs.
    let ps = agent.berth(&["ps"]);
    assert!(
        stdout_of(&ps).lines().any(|l| l.starts_with("sleeper ")),
        "{}",
        stdout_of(&ps)
    );
    let ps_json: Value = serde_json::from_slice(&agent.berth(&["ps", "--json"]).stdout).unwrap();
    assert_eq!(ps_json[0]["id"], "sleeper");
    let rm = agent.berth(&["rm", "sleeper"]);
    assert_ne!(rm.status.code(), Some(0));
    assert_eq!(
        agent.api("DELETE", "/v1/containers/sleeper", None).status,
        409
    );

    let kill = agent.berth(&["kill", "sleeper"]);
    assert_eq!(
        kill.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let wait = agent.berth(&["wait", "sleeper"]);
    assert_eq!(stdout_of(&wait).trim(), "137");
    assert_eq!(wait.status.code(), Some(137));
    let ended = agent.api("GET", "/v1/containers/sleeper", None).body;
    assert_eq!(ended["reason"], "killed");
    assert_eq!(ended["signal"], 9);
    // Cgroups go right after the exit is published; sandbox and bundle
    // stay until rm.
    agent.wait_cgroups_gone("sleeper");
    assert!(std::path::Path::new(&sandbox).exists());
    assert_eq!(agent.berth(&["rm", "sleeper"]).status.code(), Some(0));
    assert!(!std::path::Path::new(&sandbox).exists());
    assert!(!std::path::Path::new(&bundle).exists());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} left"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&sandbox),
        "a mount of the sandbox is left"
    );
    assert_eq!(agent.api("GET", "/v1/containers/sleeper", None).status, 404);
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn force_rm_kills_a_running_container() {
    require_root!();
    let agent = Agent::start();
    let container = agent.launch(json!({"id": "doomed", "command": ["sleep", "300"]}));
    let pid = container["pid"].as_u64().unwrap();
    assert_eq!(
        agent
            .api("DELETE", "/v1/containers/doomed?force=true", None)
            .status,
        204
    );
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn cpu_quota_caps_measured_usage() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "busy", "command": ["sh", "-c", "while :; do :; done"], "resources": {"cpus": 0.5}}));
    let usage = || {
        let stats = agent.api("GET", "/v1/containers/busy/stats", None);
        assert_eq!(stats.status, 200, "{:?}", stats.body);
        stats.body["isolators"]["cpu"]["usage_seconds"]
            .as_f64()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(300));
    let (start, t0) = (usage(), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (end, elapsed) = (usage(), t0.elapsed().as_secs_f64());
    let rate = (end - start) / elapsed;
    assert!(
        (0.4..=0.6).contains(&rate),
        "measured {rate:.3} CPUs under a 0.5 CPU quota"
    );
    let stats = agent.api("GET", "/v1/containers/busy/stats", None).body;
    assert!(
        stats["isolators"]["cpu"]["nr_throttled"].as_u64().unwrap() > 0,
        "{stats}"
    );
}

#[test]
fn exceeding_the_memory_limit_ends_with_memory_limit() {
    require_root!();
    let agent = Agent::start();
    // tail keeps the last 10 lines; /dev/zero has no newline, so it keeps
    // everything it reads and grows past the limit.
    let out = agent.berth(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "64M",
        "--",
        "sh",
        "-c",
        "head -c 512M /dev/zero | tail; sleep 30",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let ended = agent.wait("hog");
    assert_eq!(ended["reason"], "memory-limit", "{ended}");
    assert_eq!(ended["limitation"]["resource"], "memory");
    let message = ended["limitation"]["message"].as_str().unwrap();
    assert!(
        message.contains("64.0 MiB"),
        "the message gives the limit: {message}"
    );
    assert!(
        message.contains("peak"),
        "the message gives the peak: {message}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("memory"),
        "run says why"
    );
}

#[test]
fn bad_requests_get_400_naming_the_field_and_create_nothing() {
    require_root!();
    let agent = Agent::start();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"id": "-bad", "command": ["true"]}), "id"),
        (json!({"id": "a/b", "command": ["true"]}), "id"),
        (json!({"id": "x".repeat(65), "command": ["true"]}), "id"),
        (json!({"command": []}), "command"),
        (json!({"command": [""]}), "command"),
        (
            json!({"command": ["true"], "resources": {"cpus": 0}}),
            "resources.cpus",
        ),
        (
            json!({"command": ["true"], "resources": {"cpus": -1}}),
            "resources.cpus",
        ),
        (
            json!({"command": ["true"], "resources": {"cpus": 1e9}}),
            "resources.cpus",
        ),
        (
            json!({"command": ["true"], "resources": {"memory": 0}}),
            "resources.memory",
        ),
        (
            json!({"command": ["true"], "resources": {"memory": 1u64 << 62}}),
            "resources.memory",
        ),
        (
            json!({"command": ["true"], "rootfs": "/nonexistent/rootfs"}),
            "rootfs",
        ),
        (json!({"command": ["true"], "rootfs": "relative"}), "rootfs"),
        (
            json!({"command": ["true"], "workdir": "relative"}),
            "workdir",
        ),
        (
            json!({"command": ["true"], "isolation": ["gpu"]}),
            "isolation",
        ),
        (
            json!({"command": ["true"], "isolation": ["memory"], "resources": {"cpus": 1}}),
            "resources.cpus",
        ),
        (json!({"command": ["true"], "env": {"A=B": "c"}}), "env"),
        (json!({"command": ["true"], "cpus": 1}), "cpus"),
        (json!({"command": ["true"], "resources": {"cpu": 1}}), "cpu"),
    ];
    for (request, field) in cases {
        let answer = agent.api("POST", "/v1/containers", Some(request.clone()));
        assert_eq!(answer.status, 400, "{request} → {:?}", answer.body);
        assert_eq!(answer.body["error"]["code"], "invalid_request", "{request}");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{request}: message {message:?} should name {field}"
        );
    }
    let malformed = agent.api_raw("POST", "/v1/containers", b"{\"command\": [".to_vec());
    assert_eq!(malformed.status, 400);
    assert!(malformed.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid request body"));
    // An unknown program fails the launch: 400, and nothing is kept.
    let missing = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "nope", "command": ["/no/such/program"]})),
    );
    assert_eq!(missing.status, 400, "{:?}", missing.body);
    assert_eq!(missing.body["error"]["code"], "launch_failed");
    assert!(missing.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/no/such/program"));
    assert_eq!(agent.api("GET", "/v1/containers/nope", None).status, 404);
    assert!(
        agent.leftovers().is_empty(),
        "a failed launch left {:?}",
        agent.leftovers()
    );

    // The CLI says it in one line and exits non-zero.
    let out = agent.berth(&["run", "--cpus", "0", "--", "true"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("resources.cpus"), "{stderr}");
    let out = agent.berth(&["run", "--memory", "lots", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn ids_conflict_and_unknown_ids_are_404() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "twin", "command": ["sleep", "300"]}));
    let again = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "twin", "command": ["true"]})),
    );
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["error"]["code"], "conflict");
    for (method, path) in [
        ("GET", "/v1/containers/ghost"),
        ("GET", "/v1/containers/ghost/wait"),
        ("POST", "/v1/containers/ghost/kill"),
        ("DELETE", "/v1/containers/ghost"),
        ("GET", "/v1/containers/ghost/logs"),
    ] {
        let answer = agent.api(method, path, None);
        assert_eq!(answer.status, 404, "{method} {path}");
        assert_eq!(answer.body["error"]["code"], "not_found");
    }
    let bad_signal = agent.api(
        "POST",
        "/v1/containers/twin/kill",
        Some(json!({"signal": "NOPE"})),
    );
    assert_eq!(bad_signal.status, 400);
    assert!(bad_signal.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signal"));
}

#[test]
fn logs_read_by_offset_and_follow_until_exit() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "talker", "command": ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"]}));
    let followed = agent.api("GET", "/v1/containers/talker/logs?follow=true", None);
    assert_eq!(
        String::from_utf8_lossy(&followed.raw),
        "line1\nline2\nline3\n"
    );
    let part = agent.api("GET", "/v1/containers/talker/logs?offset=6&length=5", None);
    assert_eq!(String::from_utf8_lossy(&part.raw), "line2");
    let logs = agent.berth(&["logs", "talker"]);
    assert_eq!(stdout_of(&logs), "line1\nline2\nline3\n");
    assert_eq!(
        agent
            .api("GET", "/v1/containers/talker/logs?stream=both", None)
            .status,
        400
    );
}

#[test]
fn info_names_the_cgroup_mode_and_isolators() {
    require_root!();
    let agent = Agent::start();
    let info = agent.api("GET", "/v1/info", None).body;
    assert_eq!(info["cgroup_mode"], common::cgroup::mode_name());
    let names: Vec<&str> = info["isolators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        &names[..2],
        ["cpu", "memory"],
        "cpu and memory come first, in the default order"
    );
    let out = agent.berth(&["info"]);
    let mode = format!("cgroups: {}", common::cgroup::mode_name());
    assert!(stdout_of(&out).contains(&mode));
}

/// Every isolator's cgroup holds the command from its first instruction:
/// on cgroup v1 the process moved itself there during its setup (decision
/// 0047), with a user namespace (or on v2) the isolators moved it.
#[test]
fn the_command_starts_in_every_isolators_cgroup_with_or_without_a_user_namespace() {
    require_root!();
    let v1 = common::cgroup::mode_name() == "v1";
    let (isolation, controllers): (&str, &[&str]) = if v1 {
        (
            r#"["cpu", "memory", "blkio", "pids", "devices", "net_cls"]"#,
            &[
                "cpu", "cpuacct", "memory", "blkio", "pids", "devices", "net_cls",
            ],
        )
    } else {
        (r#"["cpu", "memory", "pids", "devices"]"#, &[""])
    };
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .is_ok_and(|max| max.trim() != "0");
    if !userns {
        common::skip_missing_kernel_feature(
            "launch::the_command_starts_in_every_isolators_cgroup (user namespace)",
            "the kernel allows no user namespaces",
        );
    }
    let agent = Agent::start_with_config(&format!(
        "isolation = {isolation}\n[userns]\nsubordinate_uids = \"6000000:65536\"\n"
    ));
    let cases = [("own", false), ("in-userns", true)];
    for (id, with_userns) in cases.into_iter().filter(|(_, u)| userns || !u) {
        let mut request = json!({"id": id, "command": ["cat", "/proc/self/cgroup"]});
        if with_userns {
            request["userns"] = json!("auto");
        }
        agent.launch(request);
        assert_eq!(agent.wait(id)["exit_code"], 0, "{}", agent.log());
        let seen = agent.stdout(id);
        for controller in controllers {
            // `ID:controllers:path`; on v2 the one line `0::path`.
            let line = seen.lines().find(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, names) = (parts.next(), parts.next().unwrap_or("-"));
                names.split(',').any(|n| n == *controller)
            });
            let line = line.unwrap_or_else(|| panic!("{id}: no {controller:?} line in {seen}"));
            assert!(
                line.ends_with(&format!("/{id}")),
                "{id} ({controller:?}) started outside its cgroup: {line}"
            );
        }
    }
}

/// Attack: a descriptor of berth's left open in the container's process
/// (the cgroups-ready pipe, the parents of its cgroups, the root mount's
/// socket: decision 0047) would hand the command the host's cgroup tree
/// or the agent's end of a channel. The command holds its stdio only.
#[test]
fn the_command_holds_no_descriptor_but_its_stdio() {
    require_root!();
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    let cases = [
        (
            "on-rootfs",
            json!({"id": "on-rootfs", "rootfs": rootfs, "command": ["ls", "/proc/self/fd"]}),
        ),
        (
            "on-host",
            json!({"id": "on-host", "command": ["ls", "/proc/self/fd"]}),
        ),
    ];
    for (id, request) in cases {
        agent.launch(request);
        assert_eq!(agent.wait(id)["exit_code"], 0, "{}", agent.log());
        let mut fds: Vec<u32> = (agent.stdout(id).split_whitespace())
            .map(|n| n.parse().unwrap())
            .collect();
        fds.sort();
        // 3 is the directory `ls` reads.
        assert_eq!(
            fds,
            [0, 1, 2, 3],
            "{id}: the command holds more than its stdio"
        );
    }
}

/// The namespaces the agent's descriptors name (`mnt:[4026532175]`, ...).
fn agent_namespaces(agent: &Agent) -> Vec<String> {
    let fds = format!("/proc/{}/fd", agent.pid().unwrap());
    std::fs::read_dir(fds)
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.starts_with("mnt:"))
        .collect()
}

/// Decision 0048: the agent holds a running container's mount namespace
/// (sent by its shim with `Running`), so that the exiting command does not
/// tear the container's mounts down before its end is told; and it lets go
/// once the end is told, for a container that exits and one removed by
/// force alike: no namespace, and none of the mounts in it, outlives them.
#[test]
fn the_agent_holds_a_containers_mount_namespace_until_its_end() {
    require_root!();
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    let running =
        agent.launch(json!({"id": "held", "rootfs": rootfs, "command": ["sleep", "100"]}));
    let pid = running["pid"]
        .as_u64()
        .expect("a running container has a pid");
    let namespace = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .unwrap()
        .display()
        .to_string();
    let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(
        namespace,
        own.display().to_string(),
        "the container has its own"
    );
    assert!(
        agent_namespaces(&agent).contains(&namespace),
        "the agent does not hold {namespace}: {:?}",
        agent_namespaces(&agent)
    );
    let removed = agent.api("DELETE", "/v1/containers/held?force=true", None);
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    assert!(
        !agent_namespaces(&agent).contains(&namespace),
        "the agent still holds {namespace} after the remove"
    );

    agent.launch(json!({"id": "done", "rootfs": rootfs, "command": ["echo", "done"]}));
    assert_eq!(agent.wait("done")["exit_code"], 0, "{}", agent.log());
    let removed = agent.api("DELETE", "/v1/containers/done", None);
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    assert_eq!(
        agent_namespaces(&agent),
        Vec::<String>::new(),
        "the agent holds a namespace of a container that is gone"
    );
}

#[test]
fn an_unreachable_agent_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--socket")
        .arg(&socket)
        .arg("ps")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
}

#[test]
fn the_agent_refuses_an_unknown_isolator_at_start() {
    let (_dir, out) = common::agent_start_output(
        None,
        ["--isolation", "cpu,gpu", "--cgroup-root", "berth-never"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown isolator \"gpu\""));
}

#[test]
fn a_busybox_rootfs_bundle_runs_the_same_under_runc() {
    require_root!();
    let Some(runc) = common::runc("a_busybox_rootfs_bundle_runs_the_same_under_runc") else {
        return;
    };
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    let script = "echo host=$(hostname) pid=$$ cwd=$(pwd) user=$(id -u); ls /; touch /probe 2>/dev/null || echo root=ro; busybox grep '^Seccomp:' /proc/self/status";
    let container = agent.launch(json!({
        "id": "interop",
        "command": ["/bin/sh", "-c", script],
        "rootfs": rootfs,
        // runc binds the dir read-only; berth's overlay root is made so.
        "read_only": true,
        "resources": {"cpus": 1, "memory": 128u64 << 20},
    }));
    agent.wait("interop");
    let ours = agent.stdout("interop");
    assert!(
        ours.contains("host=interop pid=1 cwd=/sandbox user=0"),
        "{ours}"
    );
    assert!(ours.contains("root=ro"), "{ours}");
    assert!(ours.contains("Seccomp:\t2"), "{ours}");

    let bundle = container["bundle"].as_str().unwrap();
    // The default profile is in the bundle, so runc enforces it too (its
    // output, compared below, says Seccomp: 2 as well).
    let config: Value =
        serde_json::from_slice(&std::fs::read(format!("{bundle}/config.json")).unwrap()).unwrap();
    assert_eq!(
        config["linux"]["seccomp"]["defaultAction"],
        "SCMP_ACT_ERRNO"
    );
    agent.wait_cgroups_gone("interop");
    common::assert_runc_runs_the_same(runc, bundle, "interop", &ours);
    eventually(Duration::from_secs(5), "runc's cgroup to go", || {
        (!agent.cgroup_dir("memory", Some("interop")).exists()).then_some(())
    });
}

#[test]
fn a_host_root_container_cannot_see_the_agent_or_other_sandboxes() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "neighbour", "command": ["sleep", "300"]}));
    std::fs::write(agent.sandbox("neighbour").join("secret"), "s3cret").unwrap();
    let script = format!(
        "ls -A {run} | wc -l; ls -A {work}/containers; test -S {socket} && echo socket=visible || echo socket=hidden; cat {neighbour}/secret 2>/dev/null || echo secret=hidden",
        run = agent.runtime_dir.display(),
        work = agent.work_dir.display(),
        socket = agent.socket.display(),
        neighbour = agent.sandbox("neighbour").display(),
    );
    agent.launch(json!({"id": "nosy", "command": ["sh", "-c", script]}));
    agent.wait("nosy");
    let out = agent.stdout("nosy");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["0", "nosy", "socket=hidden", "secret=hidden"],
        "{out}"
    );
}

#[test]
fn bad_log_and_network_settings_get_400_and_create_nothing() {
    require_root!();
    let agent = Agent::start();
    let cases = [
        (
            json!({"command": ["true"], "log": {"max_size": 10}}),
            "log.max_size",
        ),
        (
            json!({"command": ["true"], "log": {"max_files": 0}}),
            "log.max_files",
        ),
        (
            json!({"command": ["true"], "log": {"mode": "lossy"}}),
            "mode",
        ),
        (
            json!({"command": ["true"], "log": {"rotate": true}}),
            "rotate",
        ),
        (json!({"command": ["true"], "network": "bridge"}), "network"),
        (
            json!({"command": ["true"], "network": "ns:relative/path"}),
            "network",
        ),
    ];
    for (request, field) in cases {
        let answer = agent.api("POST", "/v1/containers", Some(request.clone()));
        assert_eq!(answer.status, 400, "{request}: {:?}", answer.body);
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{request}: {:?}",
            answer.body
        );
    }
    for flags in [
        &["--log-mode", "lossy"][..],
        &["--log-max-size", "huge"],
        &["--disk", "lots"],
        &["--device-read-bps", "/dev/vda:fast"],
        &["--device-write-iops", "/dev/vda:1.5"],
    ] {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "true"]);
        let out = agent.berth(&args);
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flags[0]),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn a_container_cannot_make_device_nodes() {
    require_root!();
    let agent = Agent::start();
    // 254:0 or whatever the host disk is: the number does not matter, the
    // capability does.
    let out = agent.berth(&[
        "run",
        "--",
        "sh",
        "-c",
        "mknod /dev/disk b 8 0 2>/dev/null && echo made || echo refused",
    ]);
    assert_eq!(stdout_of(&out), "refused\n");
}

#[test]
fn the_api_shows_no_field_of_the_agents_own_record() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "viewed", "command": ["sleep", "300"]}));
    // The record on disk has them (the agent needs them to find its shim
    // again after a restart) ...
    let record: Value = serde_json::from_slice(
        &std::fs::read(agent.runtime_dir.join("containers/viewed/container.json")).unwrap(),
    )
    .unwrap();
    assert!(record["shim"]["pid"].is_u64(), "{record}");
    assert!(record["request"].is_object(), "{record}");
    // ... no answer of the API does.
    let one = agent.api("GET", "/v1/containers/viewed", None).body;
    let list = agent.api("GET", "/v1/containers", None).body;
    let listed = list.as_array().unwrap()[0].clone();
    for shown in [one, listed] {
        assert_eq!(shown["id"], "viewed");
        for internal in ["shim", "pid_start_time", "final_usage", "request"] {
            assert!(shown.get(internal).is_none(), "{internal} in {shown}");
        }
    }
    let deleted = agent.api("DELETE", "/v1/containers/viewed?force=true", None);
    assert_eq!(deleted.status, 204);
}

#[test]
fn a_bad_field_is_refused_before_any_image_is_pulled() {
    require_root!();
    let agent = Agent::start();
    // A registry nobody listens on: a pull would fail there (and differently);
    // the request's own mistakes are found first, with nothing touched.
    let image = "127.0.0.1:9/nobody/nothing:1";
    for (body, field) in [
        (json!({"image": image, "tmp_size": 1}), "tmp_size"),
        (json!({"image": image, "env": {"A=B": "x"}}), "env"),
        (json!({"image": image, "isolation": ["nope"]}), "isolation"),
        (json!({"image": image, "id": "../x"}), "id"),
        (
            json!({"image": image, "resources": {"nope": 1}}),
            "resources.nope",
        ),
    ] {
        let answer = agent.api("POST", "/v1/containers", Some(body.clone()));
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
        assert!(
            !message.contains("127.0.0.1:9"),
            "{body}: a pull was tried: {message}"
        );
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
    assert!(!agent.log().contains("127.0.0.1:9"), "{}", agent.log());
}

#[test]
fn run_is_one_request_whose_answer_is_the_output_and_the_exit() {
    require_root!();
    let agent = Agent::start();
    // The API: the create's answer is the framed output, the id in a header.
    let answer = agent.api_raw(
        "POST",
        "/v1/containers?attach=true",
        serde_json::to_vec(
            &json!({"id": "oneshot", "command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}),
        )
        .unwrap(),
    );
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let (mut stdout, mut stderr, mut exit) = (Vec::new(), Vec::new(), None);
    let mut raw = &answer.raw[..];
    // Frames: a channel byte, 3 zero bytes, a 4-byte big-endian length,
    // the bytes (as Docker's).
    while raw.len() >= 8 {
        let len = u32::from_be_bytes(raw[4..8].try_into().unwrap()) as usize;
        let data = raw[8..8 + len].to_vec();
        match raw[0] {
            1 => stdout.extend(data),
            2 => stderr.extend(data),
            _ => exit = Some(serde_json::from_slice::<Value>(&data).unwrap()),
        }
        raw = &raw[8 + len..];
    }
    assert!(raw.is_empty());
    assert_eq!((&stdout[..], &stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
    assert_eq!(exit.expect("an exit frame")["exit_code"], 3);
    // The id the request gave (the CLI reads it from x-berth-container-id).
    assert_eq!(
        agent.api("GET", "/v1/containers/oneshot", None).body["exit_code"],
        3
    );

    // The CLI: a command that writes 1 MiB and ends at once loses nothing.
    let out = agent.berth(&[
        "run",
        "--",
        "sh",
        "-c",
        "head -c 1048576 /dev/zero | tr '\\0' a",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(out.stdout.iter().all(|b| *b == b'a'));

    // A bad field is the same 400 as a plain create, and leaves nothing.
    let out = agent.berth(&["run", "--tmp-size", "1", "--", "true"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tmp_size") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let answer = agent.api_raw(
        "POST",
        "/v1/containers?attach=true",
        serde_json::to_vec(&json!({"command": ["true"], "tmp_size": 1})).unwrap(),
    );
    assert_eq!(answer.status, 400);
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tmp_size"));
}
