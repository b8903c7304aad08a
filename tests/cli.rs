//! The CLI as operators use it (issue 13): `berth logs` options and
//! streams, rotation notices, exit codes, `--cpus` bounds, `rm` advice.

mod common;

use std::process::Output;

use common::Agent;
use serde_json::json;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn logs_tail_since_and_streams_combine() {
    require_root!();
    let agent = Agent::start();
    // Alternating stdout and stderr lines, each its own chunk: each line
    // waits until the test has seen the one before in the log.
    agent.launch(json!({"id": "both", "command": ["sh", "-c",
        "ack() { while [ ! -e ack$1 ]; do sleep 0.01; done; }; \
         for i in 1 2 3 4 5 6; do echo out$i; ack o$i; echo err$i >&2; ack e$i; done"]}));
    let sandbox = agent.sandbox("both");
    for i in 1..=6 {
        for (stream, line, name) in [("stdout", "out", "o"), ("stderr", "err", "e")] {
            common::eventually(std::time::Duration::from_secs(20), line, || {
                let answer = agent.api(
                    "GET",
                    &format!("/v1/containers/both/logs?stream={stream}"),
                    None,
                );
                text(&answer.raw)
                    .ends_with(&format!("{line}{i}\n"))
                    .then_some(())
            });
            std::fs::write(sandbox.join(format!("ack{name}{i}")), b"").unwrap();
        }
    }
    agent.wait("both");

    // Default: stdout to stdout, stderr to stderr.
    let out = agent.berth(&["logs", "both"]);
    assert_eq!(ok(&out), "out1\nout2\nout3\nout4\nout5\nout6\n");
    assert_eq!(text(&out.stderr), "err1\nerr2\nerr3\nerr4\nerr5\nerr6\n");

    // --tail with --stream all: the last N lines of the merged output.
    let out = agent.berth(&["logs", "--stream", "all", "--tail", "3", "both"]);
    assert_eq!(ok(&out), "err5\nout6\nerr6\n");
    let out = agent.berth(&["logs", "--stream", "all", "-n", "all", "both"]);
    assert_eq!(ok(&out).lines().count(), 12);
    let out = agent.berth(&["logs", "--stream", "all", "-n", "0", "both"]);
    assert_eq!(ok(&out), "");

    // --since in every accepted form, and with --tail.
    for since in [
        "10m",
        "1h30m",
        "2000-01-01",
        "2000-01-01T00:00:00",
        "946684800",
    ] {
        let out = agent.berth(&[
            "logs", "--stream", "all", "--since", since, "--tail", "2", "both",
        ]);
        assert_eq!(ok(&out), "out6\nerr6\n", "--since {since}");
    }
    let future = (chrono::Local::now() + chrono::TimeDelta::hours(1))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let out = agent.berth(&[
        "logs", "--stream", "all", "--since", &future, "-n", "5", "both",
    ]);
    assert_eq!(ok(&out), "", "nothing arrived after {future} (local time)");
    let out = agent.berth(&["logs", "--since", "yesterday", "both"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        text(&out.stderr).starts_with("berth: invalid --since"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn rotated_away_output_is_announced_and_starts_at_a_line() {
    require_root!();
    let agent = Agent::start();
    agent.launch(
        json!({"id": "few", "log": {"max_size": 65536, "max_files": 2},
        "command": ["seq", "-f", "%012.0f", "1", "100000"]}),
    );
    agent.wait("few");
    let out = agent.berth(&["logs", "--stream", "stdout", "few"]);
    let stdout = ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("berth: output before offset ")
            && stderr.ends_with(" was rotated away\n"),
        "{stderr}"
    );
    let first = stdout.lines().next().unwrap();
    assert_eq!(first.len(), 12, "a whole line: {first:?}");
    assert_eq!(stdout.lines().last(), Some("000000100000"));
}

#[test]
fn cpus_beyond_the_host_and_rm_of_a_running_container_explain_themselves() {
    require_root!();
    let agent = Agent::start();
    let host_cpus = berth_isolator_cpu::host_cpus();
    let out = agent.berth(&[
        "run",
        "--cpus",
        &(host_cpus + 1.0).to_string(),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1), "the agent refused it");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("resources.cpus") && stderr.contains(&format!("at most {host_cpus}")),
        "{stderr}"
    );
    assert_eq!(
        ok(&agent.berth(&["ps", "-a", "--json"])).trim(),
        "[]",
        "nothing half-made"
    );

    ok(&agent.berth(&["run", "-d", "--name", "busy", "--", "sleep", "300"]));
    let table = ok(&agent.berth(&["ps"]));
    assert!(
        table.lines().nth(1).unwrap().contains(" ago "),
        "relative times: {table}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&agent.berth(&["ps", "--json"]))).unwrap();
    let created = listed[0]["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "full RFC 3339 with zone: {created}"
    );
    let out = agent.berth(&["rm", "busy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("berth rm -f") && text(&out.stderr).contains("berth stop"),
        "{}",
        text(&out.stderr)
    );
    ok(&agent.berth(&["rm", "-f", "busy"]));
}

#[test]
fn stats_of_an_ended_container_shows_its_final_figures() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "done", "command": ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"]}));
    agent.wait("done");
    let out = agent.berth(&["stats", "--json", "done"]);
    let stats: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let used = stats[0]["isolators"]["cpu"]["usage_seconds"].as_f64();
    assert!(used.is_some_and(|s| s > 0.0), "{stats}");
    let table = ok(&agent.berth(&["stats", "--no-stream", "done"]));
    assert!(table.lines().nth(1).unwrap().starts_with("done"), "{table}");
    // Not in the container's API object.
    assert!(agent
        .api("GET", "/v1/containers/done", None)
        .body
        .get("final_usage")
        .is_none());
}

/// The CLI maps the first pages of its arena and of its stack with one
/// `madvise` each (decision 0060), and the kernel takes them: a stack range
/// reaching past the mapping the kernel made at exec is refused whole,
/// silently, and every page then faults as before (a release build's was,
/// decision 0061); it is now asked again, half as deep. Kernels before
/// 5.14 refuse the advice itself (EINVAL).
#[test]
fn the_cli_maps_its_first_pages_in_one_call_each() {
    let trace = tempfile::NamedTempFile::new().unwrap();
    let run = std::process::Command::new("strace")
        .args(["-f", "-e", "trace=madvise", "-o"])
        .arg(trace.path())
        .args([env!("CARGO_BIN_EXE_berth"), "--version"])
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) => {
            common::skip(
                "the_cli_maps_its_first_pages_in_one_call_each",
                &format!("strace: {e}"),
            );
            return;
        }
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls: Vec<String> = std::fs::read_to_string(trace.path())
        .unwrap()
        .lines()
        .filter(|l| l.contains("MADV_POPULATE_WRITE"))
        .map(str::to_string)
        .collect();
    let taken = |call: &String| call.ends_with("= 0") || call.contains("EINVAL");
    // The arena's, then the stack's (once more after ENOMEM).
    let (arena, stack) = match calls.as_slice() {
        [arena, stack] => (arena, stack),
        [arena, refused, stack] if refused.contains("ENOMEM") => (arena, stack),
        other => panic!("not one call each: {other:#?}"),
    };
    assert!(taken(arena), "the arena's refused: {arena}");
    assert!(taken(stack), "the stack's refused: {stack}");
}
