//! Signals and init (issue 12, item 3): `berth stop`, the foreground run's
//! signal proxy, and `--init` as the first process.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Agent;
use serde_json::json;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits until container `id`'s first process has a child: a shell running
/// `trap ...; while :; do sleep 0.1; done` has set its trap by then.
fn wait_for_loop(agent: &Agent, id: &str) {
    common::eventually(Duration::from_secs(10), "the shell's loop", || {
        let pid = agent.api("GET", &format!("/v1/containers/{id}"), None).body["pid"].as_u64()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        (!children.trim().is_empty()).then_some(())
    });
}

/// A command that ignores TERM: as a pid namespace's first process, `sleep`
/// gets only the signals it has handlers for (none).
const IGNORES_TERM: [&str; 2] = ["sleep", "300"];

#[test]
fn stop_sends_term_then_kill_after_the_grace_period() {
    require_root!();
    let agent = Agent::start();
    // A TERM-ignoring container: killed after -t 1.
    agent.launch(json!({"id": "stubborn", "command": IGNORES_TERM}));
    let started = Instant::now();
    let out = agent.berth(&["stop", "-t", "1", "stubborn"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "stubborn\n");
    assert!(took < Duration::from_secs(5), "ended in {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "the grace was given: {took:?}"
    );
    let record = agent.api("GET", "/v1/containers/stubborn", None).body;
    assert_eq!(record["state"], "exited");
    assert_eq!(record["exit_code"], 137, "{record}");

    // One that handles TERM ends at once with its own code.
    agent.launch(json!({"id": "polite", "command": ["sh", "-c",
        "trap 'exit 7' TERM; while :; do sleep 0.1; done"]}));
    wait_for_loop(&agent, "polite");
    let answer = agent.api("POST", "/v1/containers/polite/stop?t=30", None);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["exit_code"], 7);

    // Stopping an ended container is no error; a bad t is named; an
    // unknown id is 404 and the CLI goes on with the others, exiting 1.
    let answer = agent.api("POST", "/v1/containers/polite/stop", None);
    assert_eq!(answer.status, 200);
    let answer = agent.api("POST", "/v1/containers/polite/stop?t=soon", None);
    assert_eq!(answer.status, 400);
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid t"));
    let out = agent.berth(&["stop", "nosuch", "polite"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "polite\n");
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn init_forwards_term_and_reaps_zombies() {
    require_root!();
    let agent = Agent::start();
    // Without --init the TERM-ignoring pid 1 survives TERM ...
    agent.launch(json!({"id": "bare", "command": IGNORES_TERM}));
    // ... with it, TERM reaches the command, which dies of it.
    agent.launch(json!({"id": "inited", "init": true, "command": IGNORES_TERM}));
    for id in ["bare", "inited"] {
        let answer = agent.api(
            "POST",
            &format!("/v1/containers/{id}/kill"),
            Some(json!({"signal": "TERM"})),
        );
        assert_eq!(answer.status, 204);
    }
    let ended = agent.wait("inited");
    assert_eq!(ended["exit_code"], 143, "128 + TERM: {ended}");
    assert_eq!(ended["init"], true);
    let bare = agent.api("GET", "/v1/containers/bare", None).body;
    assert_eq!(bare["state"], "running", "pid 1 ignored TERM");
    agent.berth(&["kill", "bare"]);
    agent.wait("bare");

    // 100 orphans die while the command (`sleep`, which never reaps) is
    // what the container runs: with --init none is left a zombie.
    let script = "(for i in $(seq 100); do (sleep 0.01 &); done; sleep 1; \
                  grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l) & exec sleep 2";
    agent.launch(json!({"id": "orphans", "init": true, "command": ["sh", "-c", script]}));
    let ended = agent.wait("orphans");
    assert_eq!(ended["exit_code"], 0, "{ended}");
    assert_eq!(agent.stdout("orphans").trim(), "0", "zombies left");
    // The command's own exit code comes back through the init.
    agent.launch(json!({"id": "code", "init": true, "command": ["sh", "-c", "exit 3"]}));
    assert_eq!(agent.wait("code")["exit_code"], 3);
    // Without it, `sleep` as pid 1 leaves them.
    agent.launch(json!({"id": "no-init", "command": ["sh", "-c", script]}));
    agent.wait("no-init");
    let zombies: u32 = agent.stdout("no-init").trim().parse().unwrap();
    assert!(zombies > 50, "{zombies} zombies without --init");
}

#[test]
fn a_foreground_run_forwards_signals_to_the_container() {
    require_root!();
    let agent = Agent::start();
    let run = |extra: &[&str]| {
        let mut args = vec!["--socket".to_string(), agent.socket.display().to_string()];
        args.extend(["run", "--name"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let running = |id: &str| {
        common::eventually(Duration::from_secs(10), "container running", || {
            let answer = agent.api("GET", &format!("/v1/containers/{id}"), None);
            (answer.status == 200 && answer.body["state"] == "running").then_some(())
        })
    };
    let signal = |child: &std::process::Child, sig: i32| {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
    };

    // TERM is forwarded: a shell that traps it exits with its own code,
    // and berth run with it.
    let child = run(&[
        "trapper",
        "--",
        "sh",
        "-c",
        "trap 'echo got TERM; exit 5' TERM; while :; do sleep 0.1; done",
    ]);
    running("trapper");
    wait_for_loop(&agent, "trapper");
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got TERM\n");

    // Ctrl-C is forwarded as INT; a second one kills.
    let child = run(&[
        "interrupted",
        "--",
        "sh",
        "-c",
        "trap 'echo got INT' INT; while :; do sleep 0.1; done",
    ]);
    running("interrupted");
    wait_for_loop(&agent, "interrupted");
    signal(&child, libc::SIGINT);
    common::eventually(Duration::from_secs(10), "INT forwarded", || {
        agent
            .stdout("interrupted")
            .contains("got INT")
            .then_some(())
    });
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));

    // --sig-proxy=false: the CLI ends, the container keeps running.
    let child = run(&["kept", "--sig-proxy=false", "--", "sleep", "300"]);
    running("kept");
    signal(&child, libc::SIGTERM);
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), None, "the CLI died of TERM");
    assert_eq!(
        agent.api("GET", "/v1/containers/kept", None).body["state"],
        "running"
    );
    agent.berth(&["kill", "kept"]);
    agent.wait("kept");
}
