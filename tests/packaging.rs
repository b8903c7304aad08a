//! What the package installs beside the binaries (issue 16): shell
//! completions (`berth completion SHELL`) and man pages (`berth man DIR`).

use std::process::Command;

fn berth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .expect("run berth")
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = berth(&["completion", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for command in ["run", "logs", "stop", "agent"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let out = berth(&["completion", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_for_berth_and_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = berth(&["man", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    for page in ["berth.1", "berth-run.1", "berth-logs.1", "berth-agent.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    let run = std::fs::read_to_string(dir.path().join("berth-run.1")).unwrap();
    assert!(run.contains("sig\\-proxy") || run.contains("sig-proxy"));
    // The hidden generator itself gets no page.
    assert!(!dir.path().join("berth-man.1").exists());
}
