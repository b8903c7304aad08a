//! Logs line by line (issue 13): every line carries its own arrival time,
//! `--since`/`--until` pick exact lines, and both streams come in the order
//! they arrived, each on its own fd.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Agent;
use serde_json::json;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// `(time, line)` of `berth logs --timestamps` output.
fn stamped(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .map(|l| {
            let (time, line) = l.split_once(' ').expect("a timestamp prefix");
            (time.to_string(), line.to_string())
        })
        .collect()
}

/// The frames of a `frames=true` body: channel byte and data.
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        let len = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
        frames.push((body[0], body[8..8 + len].to_vec()));
        body = &body[8 + len..];
    }
    frames
}

fn nanos(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

#[test]
fn every_line_has_its_own_time_and_since_until_pick_exact_lines() {
    require_root!();
    let agent = Agent::start();
    // Pairs written in one write (one chunk, one time); each next write only
    // once the test has seen the one before in the log (so it is another
    // chunk); then a line written in two pieces, the second after the test
    // saw the first, which keeps its first piece's time.
    agent.launch(json!({"id": "lines", "command": ["sh", "-c",
        "ack() { while [ ! -e ack$1 ]; do sleep 0.01; done; }; \
         for i in 1 2 3 4 5 6 7 8; do printf 'a%s\\nb%s\\n' $i $i; ack $i; done; \
         printf 'split'; ack split; printf ' line\\n'; ack line; echo last"]}));
    let sandbox = agent.sandbox("lines");
    let ack = |name: &str, seen: &str| {
        common::eventually(Duration::from_secs(20), seen, || {
            agent.stdout("lines").ends_with(seen).then_some(())
        });
        let now = chrono::Utc::now();
        std::fs::write(sandbox.join(format!("ack{name}")), b"").unwrap();
        now
    };
    for i in 1..=8 {
        ack(&i.to_string(), &format!("b{i}\n"));
    }
    let split_acked = ack("split", "split");
    let line_acked = ack("line", "split line\n");
    agent.wait("lines");

    let lines = stamped(&ok(&agent.berth(&["logs", "--timestamps", "lines"])));
    let names: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let mut want: Vec<String> = (1..=8)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    want.extend(["split line".to_string(), "last".to_string()]);
    assert_eq!(names, want);
    let times: Vec<i64> = lines.iter().map(|(t, _)| nanos(t)).collect();
    for pair in 0..8 {
        // One write: one time for both lines.
        assert_eq!(times[2 * pair], times[2 * pair + 1], "{lines:?}");
        // The next write came later, in another chunk.
        assert!(
            times[2 * pair + 2] > times[2 * pair],
            "pair {pair}: {lines:?}"
        );
    }
    // The split line has the time of its first piece, written before the
    // test let the second piece come; "last" came after the test saw it.
    let split_acked = split_acked.timestamp_nanos_opt().unwrap();
    let line_acked = line_acked.timestamp_nanos_opt().unwrap();
    assert!(times[16] <= split_acked, "{lines:?}");
    assert!(times[17] > line_acked, "{lines:?}");

    // --since a line's time starts exactly at it; --until ends exactly at
    // it (the line it shares a write with comes too).
    let (a5, b6) = (&lines[8].0, &lines[11].0);
    let out = ok(&agent.berth(&["logs", "--since", a5, "lines"]));
    assert!(out.starts_with("a5\nb5\na6\n"), "{out}");
    let out = ok(&agent.berth(&["logs", "--until", b6, "lines"]));
    assert!(out.ends_with("b5\na6\nb6\n"), "{out}");
    assert!(out.starts_with("a1\n"), "{out}");
    let out = ok(&agent.berth(&["logs", "--since", a5, "--until", b6, "lines"]));
    assert_eq!(out, "a5\nb5\na6\nb6\n");
    // With --tail: the last N lines up to --until.
    let out = ok(&agent.berth(&["logs", "--until", b6, "-n", "3", "lines"]));
    assert_eq!(out, "b5\na6\nb6\n");
    // --until accepts the other time forms; one in the past gives nothing.
    let out = ok(&agent.berth(&["logs", "--until", "2000-01-01", "lines"]));
    assert_eq!(out, "");
    let out = agent.berth(&["logs", "--until", "soon", "lines"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("berth: invalid --until"));
    // The API names a bad `until`.
    let answer = agent.api("GET", "/v1/containers/lines/logs?until=soon", None);
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid until"),
        "{:?}",
        answer.body
    );
}

#[test]
fn lines_a_few_milliseconds_apart_get_distinct_times() {
    require_root!();
    let agent = Agent::start();
    // 40 lines 5 ms apart: an index entry per 10 ms (as before) would give
    // about every other line the time of the one before.
    agent.launch(json!({"id": "quick", "command": ["sh", "-c",
        "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo line$i; sleep 0.005; done"]}));
    agent.wait("quick");
    let lines = stamped(&ok(&agent.berth(&["logs", "--timestamps", "quick"])));
    assert_eq!(lines.len(), 40);
    let times: Vec<i64> = lines.iter().map(|(t, _)| nanos(t)).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    let distinct = times.windows(2).filter(|w| w[0] < w[1]).count() + 1;
    // A shim delayed past 5 ms reads two lines in one chunk; allow some.
    assert!(distinct >= 32, "{distinct} distinct times of 40: {lines:?}");
}

#[test]
fn both_streams_arrive_in_order_each_on_its_own_fd() {
    require_root!();
    let agent = Agent::start();
    // Each line waits until the test has seen the one before in the log,
    // so the arrival order is known.
    agent.launch(json!({"id": "mixed", "command": ["sh", "-c",
        "ack() { while [ ! -e ack$1 ]; do sleep 0.01; done; }; \
         for i in 1 2 3 4 5; do echo out$i; ack o$i; echo err$i >&2; ack e$i; done"]}));
    let sandbox = agent.sandbox("mixed");
    for i in 1..=5 {
        for (stream, line, name) in [("stdout", "out", "o"), ("stderr", "err", "e")] {
            common::eventually(Duration::from_secs(20), line, || {
                let answer = agent.api(
                    "GET",
                    &format!("/v1/containers/mixed/logs?stream={stream}"),
                    None,
                );
                text(&answer.raw)
                    .ends_with(&format!("{line}{i}\n"))
                    .then_some(())
            });
            std::fs::write(sandbox.join(format!("ack{name}{i}")), b"").unwrap();
        }
    }
    agent.wait("mixed");

    // The API's frames name each chunk's stream, in arrival order.
    let answer = agent.api(
        "GET",
        "/v1/containers/mixed/logs?stream=all&frames=true",
        None,
    );
    assert_eq!(answer.status, 200);
    let got: Vec<String> = frames(&answer.raw)
        .into_iter()
        .map(|(channel, data)| {
            let stream = match channel {
                1 => "out",
                2 => "err",
                other => panic!("stream byte {other}"),
            };
            (stream, text(&data))
        })
        .collect::<Vec<_>>()
        .iter()
        .flat_map(|(s, t)| t.lines().map(move |l| format!("{s}:{l}")))
        .collect();
    let want: Vec<String> = (1..=5)
        .flat_map(|i| [format!("out:out{i}"), format!("err:err{i}")])
        .collect();
    assert_eq!(got, want);
    // Followed with exit=true, the body ends with the container's record.
    let answer = agent.api(
        "GET",
        "/v1/containers/mixed/logs?stream=all&frames=true&follow=true&exit=true",
        None,
    );
    assert_eq!(answer.status, 200);
    let last = frames(&answer.raw).pop().unwrap();
    assert_eq!(last.0, 3, "an exit frame last");
    let record: serde_json::Value = serde_json::from_slice(&last.1).unwrap();
    assert_eq!(record["id"], "mixed");
    assert_eq!(record["exit_code"], 0);
    // frames needs stream=all.
    let answer = agent.api("GET", "/v1/containers/mixed/logs?frames=true", None);
    assert_eq!(answer.status, 400);

    // The CLI writes them to their fds in that order: into one pipe for
    // both, the lines interleave as they arrived.
    let both = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} --socket {} logs mixed 2>&1",
            env!("CARGO_BIN_EXE_berth"),
            agent.socket.display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let want: Vec<String> = (1..=5)
        .flat_map(|i| [format!("out{i}"), format!("err{i}")])
        .collect();
    assert_eq!(ok(&both).lines().collect::<Vec<_>>(), want);
    let out = agent.berth(&["logs", "mixed"]);
    assert_eq!(ok(&out), "out1\nout2\nout3\nout4\nout5\n");
    assert_eq!(text(&out.stderr), "err1\nerr2\nerr3\nerr4\nerr5\n");
    // --tail over both: the last N lines of the merged output, each on its fd.
    let out = agent.berth(&["logs", "-n", "3", "mixed"]);
    assert_eq!(ok(&out), "out5\n");
    assert_eq!(text(&out.stderr), "err4\nerr5\n");
}

#[test]
fn a_follower_with_until_stops_once_the_time_has_passed() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "ticker", "command": ["sh", "-c",
        "i=0; while true; do i=$((i+1)); echo tick$i; echo tock$i >&2; sleep 0.1; done"]}));
    // Wait until it has written something.
    common::eventually(Duration::from_secs(10), "first tick", || {
        agent.stdout("ticker").contains("tick1\n").then_some(())
    });
    let until = chrono::Utc::now() + chrono::TimeDelta::milliseconds(700);
    let until_text = until.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let started = Instant::now();
    let out = agent.berth(&[
        "logs",
        "-f",
        "--timestamps",
        "--until",
        &until_text,
        "ticker",
    ]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the follower ended by itself"
    );
    let stdout = stamped(&ok(&out));
    let stderr = stamped(&text(&out.stderr));
    assert!(stdout.len() >= 5, "{stdout:?}");
    for (time, line) in stdout.iter().chain(&stderr) {
        assert!(
            nanos(time) <= until.timestamp_nanos_opt().unwrap(),
            "{line} at {time}"
        );
    }
    // Everything up to then: the stdout lines are tick1..tickN in order.
    for (i, (_, line)) in stdout.iter().enumerate() {
        assert_eq!(line, &format!("tick{}", i + 1));
    }
    // The container is still running: the follower stopped because of --until.
    let answer = agent.api("GET", "/v1/containers/ticker", None);
    assert_eq!(answer.body["state"], "running");
    agent.berth(&["kill", "ticker"]);
    agent.wait("ticker");
}

#[test]
fn rotated_away_output_of_both_streams_is_announced_per_stream() {
    require_root!();
    let agent = Agent::start();
    agent.launch(
        json!({"id": "few", "log": {"max_size": 65536, "max_files": 2},
        "command": ["sh", "-c", "seq -f %012.0f 1 100000; echo done >&2"]}),
    );
    agent.wait("few");
    let out = agent.berth(&["logs", "few"]);
    let stdout = ok(&out);
    let stderr = text(&out.stderr);
    let mut lines = stderr.lines();
    let notice = lines.next().unwrap();
    assert!(
        notice.starts_with("berth: stdout output before offset ")
            && notice.ends_with(" was rotated away"),
        "{stderr}"
    );
    assert_eq!(lines.collect::<Vec<_>>(), ["done"]);
    let first = stdout.lines().next().unwrap();
    assert_eq!(first.len(), 12, "a whole line: {first:?}");
    assert_eq!(stdout.lines().last(), Some("000000100000"));
}
