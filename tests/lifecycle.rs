//! Lifecycle conveniences (issue 12 item 4): `--rm`, `restart`, restart
//! policies with back-off kept across agent restarts, several ids per
//! command, `ps -q`/`--filter`, labels, `-e NAME`. Real agent, as root.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Agent};
use serde_json::{json, Value};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn inspect(agent: &Agent, id: &str) -> Value {
    let answer = agent.api("GET", &format!("/v1/containers/{id}"), None);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap()
}

/// Nothing of the container is left: no record (runtime or persistent),
/// no dirs, no cgroups, not listed.
fn assert_gone(agent: &Agent, id: &str) {
    assert_eq!(
        agent
            .api("GET", &format!("/v1/containers/{id}"), None)
            .status,
        404
    );
    assert_eq!(agent.leftovers(), Vec::<String>::new());
    assert!(!agent
        .work_dir
        .join("records")
        .join(format!("{id}.json"))
        .exists());
}

/// Whether the container is gone from the agent and the host.
fn gone(agent: &Agent, id: &str) -> bool {
    agent
        .api("GET", &format!("/v1/containers/{id}"), None)
        .status
        == 404
        && agent.leftovers().is_empty()
}

#[test]
fn rm_removes_the_container_when_it_ends() {
    require_root!();
    let agent = Agent::start();
    // In the foreground: the output is still printed, the code returned.
    let out = agent.berth(&[
        "run",
        "--rm",
        "--name",
        "fg",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
    eventually(Duration::from_secs(20), "fg removed", || {
        gone(&agent, "fg").then_some(())
    });
    assert_gone(&agent, "fg");

    // Detached, through the API.
    let container = agent.launch(json!({"id": "bg", "auto_remove": true,
        "command": ["sleep", "0.2"]}));
    assert_eq!(container["auto_remove"], true);
    let shim = parent_of(container["pid"].as_u64().unwrap());
    let name = std::fs::read_to_string(format!("/proc/{shim}/comm")).unwrap();
    assert_eq!(name.trim_end(), "berth-shim");
    eventually(Duration::from_secs(20), "bg removed", || {
        gone(&agent, "bg").then_some(())
    });
    assert_gone(&agent, "bg");
    // The end is told as soon as the shim says it is recorded, before the
    // shim's process is gone; the remove waits for that (decision 0052).
    let state = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap_or_default();
    assert!(
        state.is_empty()
            || state
                .rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z'),
        "the shim {shim} still runs after its container was removed: {state}"
    );
}

/// The parent's pid of process `pid` (a container's: its shim).
fn parent_of(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit(')').next().unwrap();
    after_name
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// The end is published before the isolators' cleanup (decision 0044): a
/// remove right after the wait waits for that cleanup, so the id can be
/// launched again at once, with fresh cgroups, and nothing is left.
#[test]
fn an_id_removed_right_after_its_wait_launches_again_at_once() {
    require_root!();
    let agent = Agent::start();
    for round in 0..20 {
        agent.launch(json!({"id": "again", "command": ["sh", "-c", "exit 5"]}));
        assert_eq!(agent.wait("again")["exit_code"], 5, "round {round}");
        let removed = agent.api("DELETE", "/v1/containers/again", None);
        assert_eq!(removed.status, 204, "round {round}: {:?}", removed.body);
        assert!(
            !agent.cgroup_dir("memory", Some("again")).exists(),
            "round {round}: a removed container's cgroup is left"
        );
    }
    assert_eq!(agent.leftovers(), Vec::<String>::new());
}

#[test]
fn rm_removes_a_container_that_ended_while_the_agent_was_down() {
    require_root!();
    let mut agent = Agent::start();
    let container = agent.launch(json!({"id": "rm-down", "auto_remove": true,
        "command": ["sleep", "1000"]}));
    let pid = container["pid"].as_u64().unwrap() as i32;
    agent.kill_agent();
    // SAFETY: kill(2) of the container's process, which this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    eventually(Duration::from_secs(10), "the container's end", || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    agent.start_again();
    eventually(Duration::from_secs(20), "rm-down removed", || {
        gone(&agent, "rm-down").then_some(())
    });
    assert_gone(&agent, "rm-down");
}

#[test]
fn on_failure_restarts_n_times_with_growing_delays_then_stops() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "flaky", "restart": "on-failure:3",
        "command": ["sh", "-c", "echo run; exit 3"]}));
    let ended = eventually(Duration::from_secs(30), "three restarts", || {
        let c = inspect(&agent, "flaky");
        (c["state"] == "exited"
            && c["restart"]["count"] == 3
            && c["restart"].get("next_attempt_at").is_none())
        .then_some(c)
    });
    assert_eq!(ended["restart"]["policy"], "on-failure:3");
    assert_eq!(ended["exit_code"], 3);
    let attempts: Vec<_> = ended["restart"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(time)
        .collect();
    assert_eq!(attempts.len(), 3, "{ended}");
    // Back-off 100 ms, 200 ms, 400 ms (plus each run's own time).
    let first = attempts[1] - attempts[0];
    let second = attempts[2] - attempts[1];
    eprintln!("gaps between restarts: {first} then {second}");
    assert!(
        first >= chrono::Duration::milliseconds(200),
        "{first} {ended}"
    );
    assert!(
        second >= chrono::Duration::milliseconds(400),
        "{second} {ended}"
    );
    // The back-off doubled at each attempt (the gaps themselves also hold
    // each run's own time, which varies too much on a slow host to compare
    // them with each other).
    assert_eq!(ended["restart"]["backoff_step"], 3, "{ended}");
    // The same sandbox and logs: four runs' output.
    assert_eq!(agent.stdout("flaky"), "run\nrun\nrun\nrun\n");
    // A success is no failure: no restart.
    agent.launch(json!({"id": "fine", "restart": "on-failure",
        "command": ["true"]}));
    let fine = agent.wait("fine");
    assert_eq!(fine["restart"]["count"], 0);
    assert!(fine["restart"].get("next_attempt_at").is_none(), "{fine}");
    // ps shows the restarts.
    let ps = text(&agent.berth(&["ps", "-a"]).stdout);
    assert!(ps.contains("exited (3)"), "{ps}");
}

#[test]
fn always_restarts_across_an_agent_restart() {
    require_root!();
    // A long first delay: the restart is pending when the agent dies.
    let mut agent = Agent::start_with_config(
        "[restart]\ninitial_delay_seconds = 2.0\nmax_delay_seconds = 4.0\n",
    );
    agent.launch(json!({"id": "always", "restart": "always",
        "command": ["sh", "-c", "exit 0"]}));
    eventually(Duration::from_secs(10), "a pending restart", || {
        let c = inspect(&agent, "always");
        c["restart"]["next_attempt_at"].as_str().map(|_| ())
    });
    agent.kill_agent();
    agent.start_again();
    // The new agent re-arms it from the record.
    eventually(
        Duration::from_secs(20),
        "the restart by the new agent",
        || {
            let c = inspect(&agent, "always");
            (c["restart"]["count"].as_u64().unwrap() >= 1).then_some(())
        },
    );
    assert!(agent.log().contains("re-arming a pending restart"));

    // A container that ends while no agent runs is restarted by the next.
    let running = agent.launch(json!({"id": "long", "restart": "always",
        "command": ["sleep", "1000"]}));
    let pid = running["pid"].as_u64().unwrap() as i32;
    agent.kill_agent();
    // SAFETY: kill(2) of the container's process, which this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    eventually(Duration::from_secs(10), "the container's end", || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    agent.start_again();
    let again = eventually(Duration::from_secs(20), "long restarted", || {
        let c = inspect(&agent, "long");
        (c["state"] == "running" && c["restart"]["count"] == 1).then_some(c)
    });
    assert_ne!(again["pid"].as_u64().unwrap() as i32, pid);
}

#[test]
fn a_user_stop_holds_the_policy_off_until_restart() {
    require_root!();
    let agent = Agent::start();
    let first = agent.launch(json!({"id": "svc", "restart": "always",
        "command": ["sleep", "1000"]}));
    std::fs::write(agent.sandbox("svc").join("kept"), b"x").unwrap();
    let out = agent.berth(&["stop", "-t", "1", "svc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stopped = inspect(&agent, "svc");
    assert_eq!(stopped["state"], "exited");
    assert_eq!(stopped["restart"]["stopped_by_user"], true);
    assert!(stopped["restart"].get("next_attempt_at").is_none());

    // berth restart: running again, same sandbox, policy back in force.
    let out = agent.berth(&["restart", "svc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "svc\n");
    let again = inspect(&agent, "svc");
    assert_eq!(again["state"], "running", "{again}");
    assert_ne!(again["pid"], first["pid"]);
    assert_eq!(again["created_at"], first["created_at"]);
    assert!(again["restart"].get("stopped_by_user").is_none(), "{again}");
    assert!(agent.sandbox("svc").join("kept").exists());

    // Restart of a running container through the API: a new process.
    let answer = agent.api(
        "POST",
        "/v1/containers/svc/restart",
        Some(json!({"timeout": 1})),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["state"], "running");
    assert_ne!(answer.body["pid"], again["pid"]);
    // Its end by itself (not a user's) restarts it.
    let pid = answer.body["pid"].as_u64().unwrap() as i32;
    // SAFETY: kill(2) of the container's process, which this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    eventually(Duration::from_secs(20), "the policy's restart", || {
        let c = inspect(&agent, "svc");
        (c["state"] == "running" && c["restart"]["count"] == 1).then_some(())
    });
    assert_eq!(
        agent
            .api("POST", "/v1/containers/nosuch/restart", None)
            .status,
        404
    );
}

#[test]
fn bad_lifecycle_requests_are_refused_naming_the_field() {
    require_root!();
    let agent = Agent::start();
    for (request, field) in [
        (
            json!({"command": ["true"], "restart": "sometimes"}),
            "restart",
        ),
        (
            json!({"command": ["true"], "restart": "always", "auto_remove": true}),
            "restart",
        ),
        (
            json!({"command": ["true"], "labels": {"a=b": "c"}}),
            "labels",
        ),
        (json!({"command": ["true"], "labels": {"a": 1}}), "labels"),
    ] {
        let answer = agent.api("POST", "/v1/containers", Some(request.clone()));
        assert_eq!(answer.status, 400, "{request}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{request}: {message}");
    }
    assert_eq!(agent.leftovers(), Vec::<String>::new());
    let out = agent.berth(&["run", "--restart", "sometimes", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("berth: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn commands_take_several_ids_and_report_each_failure() {
    require_root!();
    let agent = Agent::start();
    for id in ["m1", "m2"] {
        agent.launch(json!({"id": id, "command": ["sleep", "1000"]}));
    }
    let out = agent.berth(&["inspect", "m1", "m2"]);
    assert!(out.status.success());
    let both: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(both.as_array().unwrap().len(), 2);
    // One id: the object, as before.
    let one: Value = serde_json::from_slice(&agent.berth(&["inspect", "m1"]).stdout).unwrap();
    assert_eq!(one["id"], "m1");

    let out = agent.berth(&["kill", "m1", "nosuch", "m2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("berth: ") && stderr.contains("nosuch"),
        "{stderr}"
    );
    let out = agent.berth(&["wait", "m1", "m2"]);
    assert_eq!(text(&out.stdout), "137\n137\n");
    assert_eq!(out.status.code(), Some(137));
    let out = agent.berth(&["wait", "m1", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "137\n");

    agent.launch(json!({"id": "m3", "command": ["sleep", "1000"]}));
    let out = agent.berth(&["stop", "-t", "1", "m3", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "m3\n");
    let out = agent.berth(&["rm", "m1", "nosuch", "m2", "m3"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "m1\nm2\nm3\n");
    assert_eq!(text(&out.stderr).lines().count(), 1);
    assert_eq!(agent.leftovers(), Vec::<String>::new());
}

#[test]
fn ps_filters_and_labels() {
    require_root!();
    let agent = Agent::start();
    let web = agent.launch(
        json!({"id": "web1", "labels": {"tier": "web", "canary": ""},
        "command": ["sleep", "1000"]}),
    );
    assert_eq!(web["labels"], json!({"tier": "web", "canary": ""}));
    agent.launch(json!({"id": "db1", "labels": {"tier": "db"},
        "command": ["sleep", "1000"]}));
    agent.launch(json!({"id": "done1", "labels": {"tier": "web"}, "command": ["true"]}));
    agent.wait("done1");
    // The CLI's --label.
    let out = agent.berth(&[
        "run", "-d", "--name", "cli1", "--label", "tier=cli", "-l", "solo", "--", "sleep", "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        inspect(&agent, "cli1")["labels"],
        json!({"tier": "cli", "solo": ""})
    );

    let ps = |args: &[&str]| {
        let mut argv = vec!["ps", "-q"];
        argv.extend_from_slice(args);
        let out = agent.berth(&argv);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let mut ids: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
        ids.sort();
        ids
    };
    assert_eq!(ps(&[]), ["cli1", "db1", "web1"]);
    assert_eq!(ps(&["-a"]), ["cli1", "db1", "done1", "web1"]);
    assert_eq!(ps(&["--filter", "label=tier=web"]), ["web1"]);
    assert_eq!(ps(&["-a", "--filter", "label=tier=web"]), ["done1", "web1"]);
    assert_eq!(ps(&["--filter", "state=exited"]), ["done1"]);
    assert_eq!(
        ps(&["--filter", "state=exited", "--filter", "state=running"]),
        ["cli1", "db1", "done1", "web1"]
    );
    // Different keys: all must match.
    assert_eq!(
        ps(&["--filter", "state=running", "--filter", "label=tier=web"]),
        ["web1"]
    );
    assert_eq!(ps(&["--filter", "label=canary"]), ["web1"]);
    assert_eq!(ps(&["--filter", "name=db"]), ["db1"]);
    assert_eq!(
        ps(&["--filter", "name=db", "--filter", "label=tier=web"]),
        Vec::<String>::new()
    );
    let out = agent.berth(&["ps", "--filter", "colour=red"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("colour=red"));
}

#[test]
fn env_without_a_value_passes_the_clients_own() {
    require_root!();
    let agent = Agent::start();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--socket")
        .arg(&agent.socket)
        .args([
            "run",
            "-e",
            "FROM_HOST",
            "-e",
            "NOT_SET_HERE",
            "-e",
            "PLAIN=1",
            "--",
            "sh",
            "-c",
            "echo \"$FROM_HOST ${NOT_SET_HERE-unset} $PLAIN\"",
        ])
        .env("FROM_HOST", "host value")
        .env_remove("NOT_SET_HERE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "host value unset 1\n",
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_command_that_cannot_start_exits_126_or_127() {
    require_root!();
    let agent = Agent::start();
    let out = agent.berth(&["run", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = agent.berth(&["run", "--", "/etc/hostname"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
}

#[test]
fn user_names_are_resolved_inside_the_root_filesystem() {
    require_root!();
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let rootfs = common::busybox_rootfs(dir.path());
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nweb:x:1001:\nstaff:x:50:\n",
    )
    .unwrap();
    let root = rootfs.display().to_string();
    let run = |user: &str| {
        agent.berth(&[
            "run",
            "--rootfs",
            &root,
            "-u",
            user,
            "--",
            "sh",
            "-c",
            "echo $(id -u):$(id -g)",
        ])
    };
    let out = run("web");
    assert_eq!(text(&out.stdout), "1000:1001\n", "{}", text(&out.stderr));
    assert_eq!(text(&run("web:staff").stdout), "1000:50\n");
    // exec -u NAME: the container's names too.
    let out = agent.berth(&[
        "run", "-d", "--name", "named", "--rootfs", &root, "--", "sleep", "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = agent.berth(&[
        "exec",
        "-u",
        "web",
        "named",
        "sh",
        "-c",
        "echo $(id -u):$(id -g)",
    ]);
    assert_eq!(text(&out.stdout), "1000:1001\n", "{}", text(&out.stderr));
    let out = agent.berth(&["exec", "-u", "nobody", "named", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("user_name"),
        "{}",
        text(&out.stderr)
    );
    // The host's own names are not the container's.
    let out = run("nobody");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("user_name") && stderr.contains("nobody"),
        "{stderr}"
    );

    // Attack: the root's /etc/passwd is a symlink to a host file naming a
    // user the host has: it is not followed, the name is not found.
    let before = agent.leftovers();
    let host_file = dir.path().join("host-passwd");
    std::fs::write(&host_file, "evil:x:0:0::/:/bin/sh\n").unwrap();
    std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink(&host_file, rootfs.join("etc/passwd")).unwrap();
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"rootfs": root, "user_name": "evil", "command": ["true"]})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("user_name"));
    assert_eq!(agent.leftovers(), before);

    // On the host's root, the host's names.
    let out = agent.berth(&["run", "-u", "nobody", "--", "sh", "-c", "id -u"]);
    assert_eq!(text(&out.stdout), "65534\n", "{}", text(&out.stderr));
}

#[test]
fn a_restart_interrupted_by_an_agent_crash_is_a_failed_attempt_not_a_lost_container() {
    require_root!();
    let gate = tempfile::tempdir().unwrap();
    let gate_dir = gate.path().display().to_string();
    std::fs::write(gate.path().join("cut.go"), b"").unwrap();
    let mut agent = Agent::start_with_env(
        &[("BERTH_TEST_LAUNCH_GATE", &gate_dir)],
        "[restart]\ninitial_delay_seconds = 0.5\n",
    );
    agent.launch(json!({"id": "cut", "restart": "on-failure:2",
        "command": ["sh", "-c", "exit 1"]}));
    // The first launch went through; the restart stops at the gate.
    std::fs::remove_file(gate.path().join("cut.go")).unwrap();
    std::fs::remove_file(gate.path().join("cut.waiting")).unwrap();
    eventually(Duration::from_secs(20), "the restart at the gate", || {
        gate.path().join("cut.waiting").exists().then_some(())
    });
    agent.kill_agent();
    std::fs::write(gate.path().join("cut.go"), b"").unwrap();
    agent.start_again();
    let ended = eventually(Duration::from_secs(30), "the policy run out", || {
        let c = inspect(&agent, "cut");
        (c["state"] == "exited"
            && c["restart"]["count"] == 2
            && c["restart"].get("next_attempt_at").is_none()
            && c["exit_code"] == 1)
            .then_some(c)
    });
    assert!(ended["restart"].get("relaunching").is_none(), "{ended}");
    assert!(agent.log().contains("a restart was interrupted"));
    assert!(agent.sandbox("cut").exists());
}

#[test]
fn rm_of_a_container_waiting_for_its_restart_cancels_the_restart() {
    require_root!();
    let agent = Agent::start_with_config("[restart]\ninitial_delay_seconds = 1.0\n");
    agent.launch(json!({"id": "pending", "restart": "always",
        "command": ["true"]}));
    eventually(Duration::from_secs(10), "a pending restart", || {
        let c = inspect(&agent, "pending");
        c["restart"]["next_attempt_at"].as_str().map(|_| ())
    });
    let out = agent.berth(&["ps", "-a"]);
    assert!(
        text(&out.stdout).contains("restarting (0) #1"),
        "{}",
        text(&out.stdout)
    );
    let out = agent.berth(&["rm", "pending"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The restart's timer fired and made nothing.
    eventually(
        Duration::from_secs(10),
        "the cancelled restart's time",
        || agent.log().contains("restart not made").then_some(()),
    );
    assert_gone(&agent, "pending");
}

#[test]
fn gc_leaves_a_container_waiting_for_its_restart() {
    require_root!();
    let agent = Agent::start_with_config(
        "[restart]\ninitial_delay_seconds = 30.0\n[gc]\ndelay_seconds = 0.0\ndisk_headroom = 0.0\ninterval_seconds = 3600.0\n",
    );
    agent.launch(json!({"id": "waiting", "restart": "always", "command": ["true"]}));
    agent.launch(json!({"id": "done", "command": ["true"]}));
    agent.wait("done");
    eventually(Duration::from_secs(10), "a pending restart", || {
        let c = inspect(&agent, "waiting");
        c["restart"]["next_attempt_at"].as_str().map(|_| ())
    });
    let report = agent.api("POST", "/v1/gc", None);
    assert_eq!(report.status, 200, "{:?}", report.body);
    let removed: Vec<&str> = report.body["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(removed, ["done"]);
    assert!(inspect(&agent, "waiting")["restart"]["next_attempt_at"].is_string());
    assert!(agent.sandbox("waiting").exists());
}
