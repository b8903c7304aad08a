//! The issue-13 commands on a live container: `berth logs -f --tail 20
//! --stream all web` (refused once), the default (both fds, arrival order)
//! with -f and --tail, and -f with --since. The container writes a first
//! batch, waits for a file the test creates in its sandbox, writes a second
//! batch and ends; the followers must show the tail of the first batch, then
//! the second batch as it arrives, and end with the container.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::Agent;
use serde_json::json;

/// `berth logs ARGS` with stdout and stderr into one pipe (the order they
/// were written in), its lines sent to the returned channel as they come.
fn follower(agent: &Agent, args: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} --socket {} logs {args} 2>&1",
            env!("CARGO_BIN_EXE_berth"),
            agent.socket.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if send.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// The next `n` lines, or a failure naming what did not come.
fn next_lines(lines: &mpsc::Receiver<String>, n: usize, what: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{what}: line {i}: {e}"))
        })
        .collect()
}

fn ends(mut child: Child, lines: mpsc::Receiver<String>, what: &str) {
    // The pipe closes when the follower exits: after the container ended.
    match lines.recv_timeout(Duration::from_secs(30)) {
        Err(mpsc::RecvTimeoutError::Disconnected) => {}
        Ok(extra) => panic!("{what}: unexpected line {extra:?}"),
        Err(e) => {
            let _ = child.kill();
            panic!("{what}: the follower did not end: {e}");
        }
    }
    assert!(child.wait().unwrap().success(), "{what}");
}

#[test]
fn followers_show_the_tail_then_new_lines_of_both_streams_in_order() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "web", "command": ["sh", "-c",
        "for i in 1 2 3; do echo out$i; sleep 0.03; echo err$i >&2; sleep 0.03; done; \
         while [ ! -e go ]; do sleep 0.02; done; \
         for i in 4 5; do echo out$i; sleep 0.03; echo err$i >&2; sleep 0.03; done"]}));
    common::eventually(Duration::from_secs(10), "the first batch", || {
        agent.stdout("web").contains("out3\n").then_some(())
    });
    // err3 follows out3 by 30 ms; let it land before taking the split time.
    common::eventually(Duration::from_secs(10), "err3", || {
        let answer = agent.api("GET", "/v1/containers/web/logs?stream=stderr", None);
        String::from_utf8_lossy(&answer.raw)
            .contains("err3\n")
            .then_some(())
    });
    let split = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);

    let (all, all_lines) = follower(&agent, "-f --tail 3 --stream all web");
    let (both, both_lines) = follower(&agent, "-f -n 2 web");
    let (since, since_lines) = follower(&agent, &format!("-f --since {split} web"));
    assert_eq!(
        next_lines(&all_lines, 3, "--stream all tail"),
        ["err2", "out3", "err3"]
    );
    assert_eq!(next_lines(&both_lines, 2, "default tail"), ["out3", "err3"]);

    std::fs::write(agent.sandbox("web").join("go"), b"").unwrap();
    let second = ["out4", "err4", "out5", "err5"];
    assert_eq!(next_lines(&all_lines, 4, "--stream all, followed"), second);
    assert_eq!(next_lines(&both_lines, 4, "default, followed"), second);
    assert_eq!(next_lines(&since_lines, 4, "--since, followed"), second);
    ends(all, all_lines, "--stream all");
    ends(both, both_lines, "default");
    ends(since, since_lines, "--since");
    assert_eq!(agent.wait("web")["exit_code"], 0);

    // The default keeps each stream on its own fd while following.
    let out = agent.berth(&["logs", "-f", "-n", "4", "web"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out4\nout5\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err4\nerr5\n");
    assert_eq!(out.status.code(), Some(0));

    // The sandbox listing as JSON too (--json on every listing).
    let out = agent.berth(&["files", "ls", "--json", "web", "/"]);
    assert_eq!(out.status.code(), Some(0));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let go = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "go")
        .unwrap_or_else(|| panic!("{entries}"));
    assert_eq!(go["type"], "file");
    assert_eq!(go["size"], 0);
}
