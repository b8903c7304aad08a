//! The README's quick start, run as written: every command of its second
//! ```sh block, in order, against a fresh agent (the test's own socket,
//! dirs and cgroup root); each must succeed within a minute.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::Agent;

/// The quick start's commands: the lines of the `sh` block that starts
/// with `berth agent`, comments dropped.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = &readme[readme.find("## Quick start").expect("a quick start")..];
    let blocks: Vec<&str> = section.split("```sh\n").skip(1).collect();
    let block = blocks
        .iter()
        .map(|b| &b[..b.find("```").expect("a closed block")])
        .find(|b| b.trim_start().starts_with("berth agent"))
        .expect("a block starting with `berth agent`");
    block
        .lines()
        .map(|line| match line.find("  #") {
            Some(at) => line[..at].trim_end(),
            None => line.trim_end(),
        })
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_quick_start_works_as_written() {
    require_root!();
    let commands = quick_start();
    assert_eq!(commands[0], "berth agent &", "the block starts the agent");
    assert!(commands.len() > 10, "{commands:?}");
    // The agent line, run the test's way: its own socket, dirs and cgroup
    // root (BERTH_SOCKET points every later command at it).
    let agent = Agent::start();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_berth")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in &commands[1..] {
        assert!(
            command.starts_with("berth "),
            "{command}: every quick start command is a berth command"
        );
        assert!(!command.contains("sudo"), "{command}: no sudo is assumed");
        let started = Instant::now();
        let out = Command::new("timeout")
            .args(["-s", "KILL", "60", "bash", "-euc", command])
            .env("PATH", &path)
            .env("BERTH_SOCKET", &agent.socket)
            .output()
            .expect("bash");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command} failed or hung ({:?}):\nstdout: {}\nstderr: {}\nagent: {}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            agent.log()
        );
        eprintln!("ok in {:.2?}: {command}", started.elapsed());
    }
    // The agent's log, written to a file: plain text, and no warning for
    // these normal lifecycles.
    let log = agent.log();
    assert!(!log.contains('\u{1b}'), "no colour codes in a file:\n{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && !l.contains("is not offered on this host"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
