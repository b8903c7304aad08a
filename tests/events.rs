//! The event stream (issue 14 item 2, decision 0031): a container's
//! start, die (with its code), oom, health changes and destroy in order;
//! `since` replays after an agent `kill -9`, with the exits seen at
//! recovery; a too-old `since` begins with `reset`; filters, a bad filter's
//! 400, SSE and heartbeats; `berth events`. Real agent, as root.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{eventually, Agent};
use http_body_util::BodyExt;
use serde_json::{json, Value};

/// A streamed answer read on a thread of its own: its status, content
/// type, and its lines as they come.
struct Stream {
    status: u16,
    content_type: String,
    lines: mpsc::Receiver<String>,
}

impl Stream {
    fn open(agent: &Agent, path: &str, accept: Option<&str>) -> Stream {
        let socket = agent.socket.clone();
        let path = path.to_string();
        let accept = accept.map(str::to_string);
        let (head_tx, head_rx) = mpsc::channel();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let unix = tokio::net::UnixStream::connect(&socket).await.unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(unix))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let mut request = hyper::Request::builder()
                    .uri(path)
                    .header("host", "localhost");
                if let Some(accept) = accept {
                    request = request.header("accept", accept);
                }
                let response = sender
                    .send_request(
                        request
                            .body(http_body_util::Empty::<bytes::Bytes>::new())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let _ = head_tx.send((response.status().as_u16(), content_type));
                let mut body = response.into_body();
                let mut pending = String::new();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(data) = frame.data_ref() {
                        pending.push_str(&String::from_utf8_lossy(data));
                        while let Some(end) = pending.find('\n') {
                            let line: String = pending.drain(..=end).collect();
                            if tx.send(line.trim_end_matches('\n').to_string()).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        });
        let (status, content_type) = head_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the events answer's head");
        Stream {
            status,
            content_type,
            lines,
        }
    }

    /// The next line, within `timeout`.
    fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Events (NDJSON lines, heartbeats left out) until `done` holds for
    /// one; panics after 60 s.
    fn until(&self, what: &str, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60) * common::time_scale();
        while std::time::Instant::now() < deadline {
            let Some(line) = self.line(Duration::from_millis(200)) else {
                continue;
            };
            let event: Value = serde_json::from_str(&line).expect(&line);
            if event["type"] == "heartbeat" {
                continue;
            }
            seen.push(event.clone());
            if done(&event) {
                return seen;
            }
        }
        panic!("timed out waiting for {what}; saw {seen:#?}");
    }

    /// Every line until the stream ends.
    fn rest(&self) -> Vec<String> {
        let mut all = Vec::new();
        while let Some(line) = self.line(Duration::from_secs(30) * common::time_scale()) {
            all.push(line);
        }
        all
    }
}

/// Now, for `until=`.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Every kept event up to now (the stream ends at `until`).
fn replay(agent: &Agent, query: &str) -> Vec<Value> {
    let stream = Stream::open(
        agent,
        &format!("/v1/events?until={}&{query}", now().replace('+', "%2B")),
        None,
    );
    assert_eq!(stream.status, 200);
    stream
        .rest()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect(l))
        .filter(|e| e["type"] != "heartbeat")
        .collect()
}

/// The actions of `id`'s events, in order.
fn actions_of(events: &[Value], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["actor"]["id"] == id)
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

/// Whether `want` is a subsequence of `have`.
fn in_order(have: &[String], want: &[&str]) -> bool {
    let mut rest = have.iter();
    want.iter().all(|w| rest.any(|h| h == w))
}

#[test]
fn a_containers_events_arrive_in_order() {
    require_root!();
    let agent = Agent::start();
    let stream = Stream::open(&agent, "/v1/events?type=container", None);
    assert_eq!(stream.status, 200);
    assert_eq!(stream.content_type, "application/x-ndjson");

    agent.launch(json!({
        "id": "quitter",
        "command": ["sh", "-c", "exit 3"],
        "labels": {"team": "a"},
    }));
    agent.wait("quitter");
    let answer = agent.api("DELETE", "/v1/containers/quitter", None);
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    let events = stream.until("quitter's destroy", |e| {
        e["actor"]["id"] == "quitter" && e["action"] == "destroy"
    });
    let quitter = actions_of(&events, "quitter");
    assert_eq!(
        quitter,
        ["create", "start", "die", "destroy"],
        "{events:#?}"
    );
    let die = events.iter().find(|e| e["action"] == "die").unwrap();
    assert_eq!(die["attributes"]["exit_code"], 3, "{die}");
    assert_eq!(die["attributes"]["reason"], "exited", "{die}");
    assert_eq!(die["actor"]["labels"]["team"], "a", "{die}");
    assert!(die["time"].as_str().unwrap().ends_with('Z'), "{die}");

    // A healthy container that then runs out of memory.
    agent.launch(json!({
        "id": "hog",
        "command": ["sh", "-c", "while [ ! -e go ]; do sleep 0.05; done; head -c 512M /dev/zero | tail"],
        "resources": {"memory": 64u64 << 20},
        "health": {"cmd": ["true"], "interval": "100ms", "retries": 1},
    }));
    let mut events = stream.until("hog healthy", |e| {
        e["action"] == "health_status" && e["attributes"]["status"] == "healthy"
    });
    let answer = agent.api(
        "PATCH",
        "/v1/containers/hog/resources",
        Some(json!({"memory": 96u64 << 20})),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    std::fs::write(agent.sandbox("hog").join("go"), "").unwrap();
    let ended = agent.wait("hog");
    assert_eq!(ended["reason"], "memory-limit", "{ended}");
    let answer = agent.api("DELETE", "/v1/containers/hog", None);
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    events.extend(stream.until("hog's destroy", |e| {
        e["actor"]["id"] == "hog" && e["action"] == "destroy"
    }));
    let hog = actions_of(&events, "hog");
    assert!(
        in_order(
            &hog,
            &[
                "create",
                "start",
                "health_status",
                "update",
                "oom",
                "die",
                "destroy"
            ]
        ),
        "{hog:?}"
    );
    let oom = events.iter().find(|e| e["action"] == "oom").unwrap();
    assert_eq!(oom["attributes"]["reason"], "memory-limit", "{oom}");
    let die = events
        .iter()
        .find(|e| e["action"] == "die" && e["actor"]["id"] == "hog")
        .unwrap();
    assert_eq!(die["attributes"]["reason"], "memory-limit", "{die}");
    // Numbered in order, one boot epoch.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(events.iter().all(|e| e["epoch"] == events[0]["epoch"]));
}

#[test]
fn since_replays_after_kill_9_with_the_exits_seen_at_recovery() {
    require_root!();
    let mut agent = Agent::start();
    let launched = agent.launch(json!({
        "id": "sleeper",
        "command": ["sh", "-c", "while [ ! -e go ]; do sleep 0.05; done; exit 7"],
    }));
    let first = replay(&agent, "since=0");
    let epoch = first[0]["epoch"].clone();
    assert_eq!(first[0]["type"], "agent", "{first:#?}");
    assert_eq!(first[0]["action"], "start", "{first:#?}");
    assert_eq!(actions_of(&first, "sleeper"), ["create", "start"]);
    let last_seq = first.last().unwrap()["seq"].as_u64().unwrap();

    agent.kill_agent();
    // The container exits while no agent runs.
    std::fs::write(agent.sandbox("sleeper").join("go"), "").unwrap();
    let pid = launched["pid"].as_u64().unwrap();
    eventually(Duration::from_secs(30), "the container's end", || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    agent.start_again();
    agent.wait("sleeper");

    let after = replay(&agent, &format!("since={last_seq}"));
    assert!(
        after.iter().all(|e| e["seq"].as_u64().unwrap() > last_seq),
        "{after:#?}"
    );
    assert_eq!(after[0]["type"], "agent", "{after:#?}");
    assert_eq!(after[0]["action"], "start", "{after:#?}");
    assert_ne!(after[0]["epoch"], epoch, "a new boot epoch");
    let die = after
        .iter()
        .find(|e| e["actor"]["id"] == "sleeper" && e["action"] == "die")
        .unwrap_or_else(|| panic!("no die at recovery: {after:#?}"));
    assert_eq!(die["attributes"]["exit_code"], 7, "{die}");
    // Everything from before the kill is still there, numbered on.
    let all = replay(&agent, "since=0");
    assert_eq!(all[..first.len()], first[..]);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn old_since_resets_filters_sse_heartbeats_and_the_cli() {
    require_root!();
    let agent = Agent::start_with_config("[events]\nring_size = 6\nheartbeat_seconds = 0.2\n");
    for (id, code) in [("one", 1), ("two", 2), ("three", 3)] {
        agent.launch(json!({
            "id": id,
            "command": ["sh", "-c", format!("exit {code}")],
            "labels": {"n": id},
        }));
        agent.wait(id);
    }
    // 1 agent start + 3 x (create, start, die) = 10 events, 6 kept.
    let all = replay(&agent, "since=0");
    assert_eq!(all[0]["action"], "reset", "{all:#?}");
    assert_eq!(all[0]["type"], "agent");
    assert_eq!(all.len(), 7, "{all:#?}");
    let oldest = all[1]["seq"].as_u64().unwrap();
    // From a kept one: no reset.
    let kept = replay(&agent, &format!("since={oldest}"));
    assert_eq!(kept.len(), 5, "{kept:#?}");
    assert!(kept.iter().all(|e| e["action"] != "reset"));
    // A time before the oldest kept event: reset too.
    let by_time = replay(&agent, "since=2000-01-01T00:00:00Z");
    assert_eq!(by_time[0]["action"], "reset");

    // Filters: one key's values are alternatives, keys all apply.
    let dies = replay(&agent, "since=0&action=die");
    let ids: Vec<&str> = dies[1..]
        .iter()
        .map(|e| e["actor"]["id"].as_str().unwrap())
        .collect();
    // "one"'s die has left the ring.
    assert_eq!(ids, ["two", "three"], "{dies:#?}");
    let two = replay(&agent, "since=0&container=two&action=die&action=start");
    assert_eq!(actions_of(&two, "two"), ["start", "die"], "{two:#?}");
    assert_eq!(two.len(), 3, "reset, start, die: {two:#?}");
    let labelled = replay(&agent, "since=0&label=n%3Dthree");
    assert_eq!(actions_of(&labelled, "three"), ["create", "start", "die"]);
    assert_eq!(labelled.len(), 4, "{labelled:#?}");
    let images = replay(&agent, "since=0&type=image");
    assert_eq!(images.len(), 1, "only the reset: {images:#?}");

    // A bad filter: 400 naming the field, nothing streamed.
    for (query, field) in [
        ("type=volume", "type"),
        ("action=explode", "action"),
        ("since=yesterday", "since"),
        ("label=%3Dx", "label"),
        ("colour=red", "colour"),
    ] {
        let answer = agent.api("GET", &format!("/v1/events?{query}"), None);
        assert_eq!(answer.status, 400, "{query}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("invalid {field}")),
            "{query}: {message}"
        );
    }

    // SSE when asked: id, event, data; a comment as heartbeat.
    let sse = Stream::open(
        &agent,
        &format!("/v1/events?since={oldest}"),
        Some("text/event-stream"),
    );
    assert_eq!(sse.status, 200);
    assert_eq!(sse.content_type, "text/event-stream");
    let head: Vec<String> = (0..4)
        .map(|_| sse.line(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(head[0], format!("id: {}", oldest + 1), "{head:?}");
    assert_eq!(head[1], "event: container", "{head:?}");
    let data: Value = serde_json::from_str(head[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["seq"], oldest + 1);
    assert_eq!(head[3], "");
    eventually(Duration::from_secs(10), "an SSE heartbeat", || {
        (sse.line(Duration::from_secs(1))? == ": heartbeat").then_some(())
    });
    // NDJSON heartbeat on an idle stream.
    let idle = Stream::open(&agent, "/v1/events", None);
    let beat: Value = serde_json::from_str(&idle.line(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(beat["type"], "heartbeat", "{beat}");

    // The CLI: a line per event, or the JSON.
    let until = now();
    let out = agent.berth(&[
        "events",
        "--since",
        &oldest.to_string(),
        "--until",
        &until,
        "--filter",
        "container=three",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let die_line = text
        .lines()
        .find(|l| l.contains(" container die three "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(die_line.contains("exit_code=3"), "{die_line}");
    let out = agent.berth(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--json",
        "-f",
        "action=die",
    ]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "reset and two dies: {lines:#?}");
    let out = agent.berth(&["events", "--filter", "type=volume"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("berth: ") && err.contains("invalid type"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn image_pull_and_delete_are_events() {
    require_root!();
    if let Some(tool) = common::registry::missing_tool() {
        common::skip(
            "image_pull_and_delete_are_events",
            &format!("{tool} is not installed"),
        );
        return;
    }
    let reg = common::registry::Registry::start();
    let source = reg.build_image("ev", 1);
    let digest = reg.push(&source, "t/ev:v1", &[]);
    let agent = Agent::start_with_config(&format!(
        "[images]\ninsecure_registries = [\"{addr}\"]\n[images.credentials.\"{addr}\"]\nusername = \"{user}\"\npassword = \"{pw}\"\n",
        addr = reg.addr,
        user = common::registry::USER,
        pw = common::registry::PASSWORD,
    ));
    let reference = format!("{}/t/ev:v1", reg.addr);
    let stream = Stream::open(&agent, "/v1/events?type=image", None);
    let out = agent.berth(&["pull", &reference]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agent.berth(&["rmi", &reference]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = stream.until("the delete", |e| e["action"] == "delete");
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["pull", "delete"], "{events:#?}");
    for event in &events {
        assert_eq!(event["type"], "image");
        assert_eq!(event["actor"]["name"], reference.as_str(), "{event}");
        assert_eq!(event["attributes"]["digest"], digest.as_str(), "{event}");
    }
}
