//! Shippable logs: `logs?format=jsonl` (one JSON object per line with the
//! container's id, name and labels) and the `logs.json` metadata file
//! beside each container's logs dir that a shipper tailing the segment
//! files reads.

#[macro_use]
mod common;

use common::Agent;
use serde_json::{json, Value};

fn jsonl(agent: &Agent, id: &str, query: &str) -> Vec<Value> {
    let answer = agent.api(
        "GET",
        &format!("/v1/containers/{id}/logs?format=jsonl&{query}"),
        None,
    );
    assert_eq!(answer.status, 200, "{query}: {:?}", answer.body);
    String::from_utf8(answer.raw)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

fn logs(objects: &[Value]) -> Vec<(String, String)> {
    objects
        .iter()
        .map(|o| {
            (
                o["stream"].as_str().unwrap().to_string(),
                o["log"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn jsonl_objects_carry_time_stream_log_and_the_container() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({
        "id": "shipme",
        "labels": {"app": "shop", "tier": "web"},
        "command": ["sh", "-c",
            "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo 'quote \" and \\ back'; sleep 0.2; printf unfinished"],
    }));
    agent.wait("shipme");

    let all = jsonl(&agent, "shipme", "stream=all");
    assert_eq!(
        logs(&all),
        [
            ("stdout".into(), "out1\n".into()),
            ("stderr".into(), "err1\n".into()),
            ("stdout".into(), "quote \" and \\ back\n".into()),
            ("stdout".into(), "unfinished".into()),
        ]
    );
    let mut last = 0;
    for object in &all {
        assert_eq!(object["id"], "shipme");
        assert_eq!(object["name"], "shipme");
        assert_eq!(object["labels"], json!({"app": "shop", "tier": "web"}));
        let time = chrono::DateTime::parse_from_rfc3339(object["time"].as_str().unwrap())
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        assert!(time >= last, "{all:?}");
        last = time;
    }

    // stream, tail and since work as for raw bytes.
    assert_eq!(
        logs(&jsonl(&agent, "shipme", "stream=stderr")),
        [("stderr".into(), "err1\n".into())]
    );
    assert_eq!(
        logs(&jsonl(&agent, "shipme", "stream=all&tail=2")),
        logs(&all[2..])
    );
    assert_eq!(logs(&jsonl(&agent, "shipme", "tail=1")), logs(&all[3..]));
    let since = all[1]["time"].as_str().unwrap();
    assert_eq!(
        logs(&jsonl(
            &agent,
            "shipme",
            &format!("stream=all&since={since}")
        )),
        logs(&all[1..])
    );

    // `berth logs --format jsonl`: both streams on stdout.
    let output = agent.berth(&["logs", "--format", "jsonl", "shipme"]);
    assert!(output.status.success(), "{output:?}");
    let cli: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logs(&cli), logs(&all));

    // Bad parameters are named.
    let answer = agent.api("GET", "/v1/containers/shipme/logs?format=xml", None);
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("format"),
        "{:?}",
        answer.body
    );
    let answer = agent.api(
        "GET",
        "/v1/containers/shipme/logs?format=jsonl&stream=all&frames=true",
        None,
    );
    assert_eq!(answer.status, 400);
}

#[test]
fn jsonl_follow_delivers_every_line_and_ends_with_the_container() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({
        "id": "follower",
        "labels": {"app": "ticker"},
        "command": ["sh", "-c",
            "i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo tick$i; echo tock$i >&2; sleep 0.05; done"],
    }));
    // Ends when the container has ended and everything is delivered.
    let objects = jsonl(&agent, "follower", "stream=all&follow=true");
    let out: Vec<_> = logs(&objects)
        .into_iter()
        .filter(|(s, _)| s == "stdout")
        .map(|(_, l)| l)
        .collect();
    let err: Vec<_> = logs(&objects)
        .into_iter()
        .filter(|(s, _)| s == "stderr")
        .map(|(_, l)| l)
        .collect();
    let want = |word: &str| (1..=20).map(|i| format!("{word}{i}\n")).collect::<Vec<_>>();
    assert_eq!(out, want("tick"));
    assert_eq!(err, want("tock"));
    assert!(objects.iter().all(|o| o["labels"]["app"] == "ticker"));
}

#[test]
fn the_metadata_file_names_the_container_and_its_log_files() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({
        "id": "meta",
        "labels": {"team": "payments"},
        "command": ["sh", "-c", "echo to-out; echo to-err >&2"],
    }));
    agent.wait("meta");
    let path = agent.container_dir("meta").join("logs.json");
    let meta: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(meta["id"], "meta");
    assert_eq!(meta["name"], "meta");
    assert_eq!(meta["labels"], json!({"team": "payments"}));
    assert_eq!(meta["image"], Value::Null);
    let log_dir = std::path::PathBuf::from(meta["log_dir"].as_str().unwrap());
    assert_eq!(log_dir, agent.log_dir("meta"));
    // The type the agent writes reads it back.
    let typed: berth::logs::meta::LogMeta =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(typed.id, "meta");
    for (stream, text) in [("stdout", "to-out\n"), ("stderr", "to-err\n")] {
        let files = &meta["streams"][stream];
        let current = log_dir.join(files["current"].as_str().unwrap());
        assert_eq!(std::fs::read_to_string(&current).unwrap(), text);
        assert!(log_dir.join(files["index"].as_str().unwrap()).is_file());
        // The segment glob matches the segment the link points at.
        let pattern = log_dir.join(files["segments"].as_str().unwrap());
        let segments: Vec<_> = glob_segments(&pattern);
        assert_eq!(segments.len(), 1, "{pattern:?}");
        assert_eq!(
            std::fs::canonicalize(&current).unwrap(),
            std::fs::canonicalize(&segments[0]).unwrap()
        );
    }
    // Removed with the container.
    assert_eq!(
        agent.api("DELETE", "/v1/containers/meta", None).status / 100,
        2
    );
    assert!(!path.exists());
}

/// The files matching a `dir/NAME.[0-9]...` pattern (no glob crate: the
/// pattern's last component is a prefix and 20 digits).
fn glob_segments(pattern: &std::path::Path) -> Vec<std::path::PathBuf> {
    let dir = pattern.parent().unwrap();
    let last = pattern.file_name().unwrap().to_str().unwrap();
    let prefix = last.split('[').next().unwrap();
    let digits = last.matches("[0-9]").count();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.strip_prefix(prefix).is_some_and(|rest| {
                rest.len() == digits && rest.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .collect()
}
