//! The README's quick start, run as written: every line of its first `sh`
//! block, in order, against a fresh agent of the test's own (temp dirs, its
//! own socket, a cgroup root below the test's cgroup). The build lines are
//! what made this binary, and the `berth agent &` line is the test's agent.

mod common;

use std::process::{Command, Stdio};

use common::Agent;

/// The quick start's command lines.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = readme
        .split("## Quick start")
        .nth(1)
        .expect("README has a Quick start section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the Quick start has a sh block");
    block.lines().map(str::to_string).collect()
}

#[test]
fn every_quick_start_command_works_in_order() {
    require_root!();
    let agent = Agent::start();
    let berth = env!("CARGO_BIN_EXE_berth");
    let mut ran = 0;
    for line in quick_start() {
        let command = line.trim();
        if command.starts_with("apt-get ") || command.starts_with("cargo build") {
            continue;
        }
        if command.contains("berth agent") {
            // The test's agent is already up, with the test's dirs.
            continue;
        }
        assert!(
            command.contains("sudo target/release/berth"),
            "a quick-start line this test does not know how to run: {command}"
        );
        let command = command.replace("sudo target/release/berth", berth);
        // `timeout` ends a command that hangs; 124 says it did.
        let out = Command::new("timeout")
            .args(["60", "sh", "-c", &command])
            .env("BERTH_SOCKET", &agent.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run sh");
        // `berth wait` exits with the container's code, which it prints.
        let waited = command.contains(" wait ")
            && String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<i32>()
                .ok()
                == out.status.code();
        assert!(
            out.status.success() || waited,
            "README line failed ({:?}): {line}\nstdout: {}\nstderr: {}\nagent log:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            agent.log()
        );
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} quick-start lines ran");
    // The quick start cleans up after itself: `web` is gone.
    assert_eq!(
        agent.api("GET", "/v1/containers/web", None).status,
        404,
        "the quick start leaves web behind"
    );
}
