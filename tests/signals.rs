//! Signals and init (issue 12 item 3): `--init` reaps orphans and forwards
//! signals, `stop` escalates TERM to KILL, a foreground `berth run` forwards
//! the signals it receives.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, Agent};
use serde_json::json;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The pids of a process's children, from the host's /proc.
fn children(pid: u64) -> Vec<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn state_of(pid: u64) -> Option<char> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .and_then(|s| s.trim().chars().next())
}

#[test]
fn init_reaps_orphans_and_forwards_term() {
    require_root!();
    let agent = Agent::start();
    // 100 background sleeps whose parent shell exits at once: each is
    // re-parented to pid 1 and, when it ends, is a zombie unless pid 1 reaps
    // it. The shell itself has no TERM handler: as pid 1 it would ignore
    // TERM, as the init's child it dies of it.
    let container = agent.launch(json!({"id": "reaper", "init": true, "command": ["sh", "-c",
        "i=0; while [ $i -lt 100 ]; do sh -c 'sleep 0.2 &'; i=$((i+1)); done; echo spawned; sleep 1000; echo not reached"]}));
    assert_eq!(container["init"], true);
    let pid = container["pid"].as_u64().unwrap();
    eventually(Duration::from_secs(20), "the orphans spawned", || {
        agent.stdout("reaper").contains("spawned").then_some(())
    });
    // Only the shell is left below the init: every orphan was reaped.
    let left = eventually(Duration::from_secs(20), "the orphans reaped", || {
        let kids = children(pid);
        (kids.len() == 1).then_some(kids)
    });
    assert_ne!(state_of(left[0]), Some('Z'));
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/comm", left[0]))
            .unwrap()
            .trim(),
        "sh"
    );

    let answer = agent.api(
        "POST",
        "/v1/containers/reaper/kill",
        Some(json!({"signal": "TERM"})),
    );
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    let ended = agent.wait("reaper");
    assert_eq!(ended["exit_code"], 143, "{ended}");
    assert!(!agent.stdout("reaper").contains("not reached"));
}

#[test]
fn stop_escalates_to_kill_after_the_grace_period() {
    require_root!();
    let agent = Agent::start();
    // pid 1 without a handler: TERM is ignored.
    agent.launch(json!({"id": "deaf", "command": ["sleep", "1000"]}));
    let started = Instant::now();
    let out = agent.berth(&["stop", "-t", "1", "deaf"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "deaf\n");
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert!(took >= Duration::from_secs(1), "stop took {took:?}");
    let ended = agent.wait("deaf");
    assert_eq!(ended["exit_code"], 137, "{ended}");
    assert_eq!(ended["signal"], 9, "{ended}");

    // Stopping an ended container answers with it, unchanged.
    let answer = agent.api("POST", "/v1/containers/deaf/stop", None);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["exit_code"], 137);

    // A handler of TERM ends at once, with its own code.
    agent.launch(json!({"id": "polite", "command": ["sh", "-c",
        "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"]}));
    eventually(Duration::from_secs(10), "the trap set", || {
        agent.stdout("polite").contains("ready").then_some(())
    });
    let answer = agent.api(
        "POST",
        "/v1/containers/polite/stop",
        Some(json!({"timeout": 30})),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["exit_code"], 7, "{:?}", answer.body);

    // Bad input names the field; unknown containers are 404.
    let answer = agent.api(
        "POST",
        "/v1/containers/polite/stop",
        Some(json!({"timeout": -1})),
    );
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.to_string().contains("timeout"),
        "{:?}",
        answer.body
    );
    let answer = agent.api("POST", "/v1/containers/nope/stop", None);
    assert_eq!(answer.status, 404);
    let out = agent.berth(&["stop", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("berth: "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

/// Starts a foreground `berth run` and waits until its container runs.
fn foreground(agent: &Agent, id: &str, args: &[&str]) -> (std::process::Child, u64) {
    let child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--socket")
        .arg(&agent.socket)
        .args(["run", "--name", id])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = eventually(Duration::from_secs(20), "the container running", || {
        let answer = agent.api("GET", &format!("/v1/containers/{id}"), None);
        (answer.status == 200 && answer.body["state"] == "running")
            .then(|| answer.body["pid"].as_u64())
            .flatten()
    });
    (child, pid)
}

fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

#[test]
fn foreground_run_forwards_signals() {
    require_root!();
    let agent = Agent::start();

    // SIGINT reaches the command, which dies of it: 130.
    let (child, _) = foreground(&agent, "int", &["--init", "--", "sleep", "1000"]);
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert_eq!(agent.wait("int")["exit_code"], 130);

    // SIGTERM likewise: 143.
    let (child, _) = foreground(&agent, "term", &["--init", "--", "sleep", "1000"]);
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));

    // A pid 1 that ignores SIGINT: the first is forwarded and ignored, the
    // second Ctrl-C sends KILL. The first is seen handled once the container
    // has it pending or has dropped it; the CLI's own handling is what the
    // test waits for, through the agent: a KILL ends it with 137.
    let (child, _) = foreground(&agent, "deaf", &["--", "sleep", "1000"]);
    signal(&child, libc::SIGINT);
    // The CLI coalesces signals that arrive before it handled the first;
    // keep interrupting until the second one has been seen.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = agent.api("GET", "/v1/containers/deaf", None);
        if answer.body["state"] == "exited" {
            break;
        }
        assert!(Instant::now() < deadline, "the container did not end");
        signal(&child, libc::SIGINT);
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));

    // --sig-proxy=false: the CLI dies of the signal, the container runs on.
    let (mut child, _) = foreground(
        &agent,
        "alone",
        &["--init", "--sig-proxy=false", "--", "sleep", "1000"],
    );
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by SIGINT");
    let answer = agent.api("GET", "/v1/containers/alone", None);
    assert_eq!(answer.body["state"], "running");
    let out = agent.berth(&["stop", "-t", "5", "alone"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(agent.wait("alone")["exit_code"], 143);
}

#[test]
fn a_command_that_cannot_start_exits_127_or_126() {
    require_root!();
    let agent = Agent::start();
    let out = agent.berth(&["run", "--", "no-such-command-here"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no-such-command-here"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).lines().count(), 1);
    // A directory is found but cannot be run.
    let out = agent.berth(&["run", "--", "/etc"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    // Also with --init: the reaper does not hide the exec failure.
    let out = agent.berth(&["run", "--init", "--", "no-such-command-here"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    // Nothing is left of the failed launches.
    let out = agent.berth(&["ps", "-a", "--json"]);
    assert_eq!(text(&out.stdout).trim(), "[]");
}
