//! Every `berth` command and argument explains itself in `--help` (issue 13:
//! `<ID>`/`<PATH>` arguments had no help text). Walks the real binary's help,
//! command by command, so a new subcommand is checked without being listed here.

use std::process::Command;

fn help(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{path:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The indented entries of one `Section:` of a help text, as (name, rest).
fn section(text: &str, title: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // An entry starts at column 2; deeper lines continue the one before.
        .filter(|l| !l[2..].starts_with(' '))
        .map(|l| {
            let l = &l[2..];
            let (name, rest) = l.split_once("  ").unwrap_or((l, ""));
            (name.to_string(), rest.trim().to_string())
        })
        .collect()
}

#[test]
fn every_command_and_argument_has_help_text() {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    let mut arguments = 0;
    while let Some(path) = todo.pop() {
        let text = help(&path);
        seen += 1;
        for (name, about) in section(&text, "Commands:") {
            if name == "help" {
                continue;
            }
            assert!(!about.is_empty(), "{path:?} {name}: no description");
            let mut sub = path.clone();
            sub.push(name);
            todo.push(sub);
        }
        for (name, about) in section(&text, "Arguments:") {
            arguments += 1;
            assert!(
                !about.is_empty(),
                "berth {} {name}: no help text\n{text}",
                path.join(" ")
            );
        }
    }
    assert!(seen > 15, "walked only {seen} commands");
    // Every listing or report command can print JSON.
    for command in [
        &["ps"][..],
        &["stats"],
        &["gc"],
        &["info"],
        &["files", "ls"],
    ] {
        let path: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        assert!(
            help(&path).contains("--json"),
            "berth {command:?}: no --json"
        );
    }
    assert!(arguments > 10, "checked only {arguments} arguments");
    eprintln!("{seen} commands, {arguments} arguments with help text");
}

#[test]
fn exit_statuses_are_documented_in_help_and_readme() {
    let text = help(&[]);
    let statuses = text
        .split("Exit status:")
        .nth(1)
        .unwrap_or_else(|| panic!("no exit statuses in berth --help:\n{text}"));
    for said in [
        "0 ok",
        "1 an error the agent reported",
        "2 a usage error",
        "128+n",
    ] {
        assert!(statuses.contains(said), "{said:?} not in {statuses}");
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("Exit status of every `berth` command")
        .nth(1)
        .expect("the README documents exit statuses");
    for said in [
        "0 when it worked",
        "1 for an error",
        "2 for a usage error",
        "128+n",
    ] {
        assert!(section.contains(said), "README: {said:?}");
    }
}
