//! The agent and its records survive bad state: a second agent on the same
//! dirs, a corrupt record, a forced remove during a launch, user errors
//! found at launch, hostile API clients, and a CLI whose output is closed.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{busybox_rootfs, eventually, Agent};
use serde_json::{json, Value};

fn sleeper(id: &str) -> Value {
    json!({"id": id, "command": ["sleep", "1000"]})
}

/// Whether a process runs (exists and is not a zombie).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !state.is_some_and(|s| s.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn state_of(agent: &Agent, id: &str) -> Value {
    agent.api("GET", &format!("/v1/containers/{id}"), None).body
}

/// A second agent on the same runtime and work dirs, on a socket of its
/// own so that only the runtime dir's lock can stop it.
fn second_agent(agent: &Agent) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("agent")
        .arg("--socket")
        .arg(agent.dir.path().join("second.sock"))
        .arg("--work-dir")
        .arg(&agent.work_dir)
        .arg("--runtime-dir")
        .arg(&agent.runtime_dir)
        .arg("--cgroup-root")
        .arg(&agent.cgroup_root)
        .arg("--shim")
        .arg(env!("CARGO_BIN_EXE_berth-shim"))
        .stdin(Stdio::null())
        .output()
        .expect("start the second agent")
}

#[test]
fn a_second_agent_is_refused_before_it_touches_the_first_ones_launches() {
    require_root!();
    let gate = tempfile::tempdir().unwrap();
    let agent = Agent::start_with_env(
        &[("BERTH_TEST_LAUNCH_GATE", gate.path().to_str().unwrap())],
        "",
    );
    // Two running containers, and a burst of launches held in flight at the
    // gate (their processes exist; their records say "created").
    let ids: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    for id in &ids[..2] {
        std::fs::write(gate.path().join(format!("{id}.go")), b"").unwrap();
        agent.launch(sleeper(id));
    }
    let in_flight: Vec<_> = ids[2..]
        .iter()
        .map(|id| {
            let socket = agent.socket.clone();
            let id = id.clone();
            std::thread::spawn(move || launch_over(&socket, &id))
        })
        .collect();
    for id in &ids[2..] {
        let waiting = gate.path().join(format!("{id}.waiting"));
        eventually(Duration::from_secs(20), "launches in flight", || {
            waiting.exists().then_some(())
        });
    }

    let second = second_agent(&agent);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second agent ran: {stderr}");
    let expected = format!(
        "another agent holds {} (pid {})",
        agent.runtime_dir.display(),
        agent.pid().unwrap()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    for id in &ids[2..] {
        std::fs::write(gate.path().join(format!("{id}.go")), b"").unwrap();
    }
    for launch in in_flight {
        let (status, body) = launch.join().unwrap();
        assert_eq!(status, 201, "a launch of the first agent failed: {body}");
    }
    for id in &ids {
        let container = state_of(&agent, id);
        assert_eq!(container["state"], "running", "{id}: {container}");
        assert!(alive(container["pid"].as_u64().unwrap()), "{id}");
    }
    assert_eq!(agent.api("GET", "/v1/info", None).status, 200);

    // The same, ungated: a burst of launches racing second agents.
    let burst: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
    for id in &burst {
        std::fs::write(gate.path().join(format!("{id}.go")), b"").unwrap();
    }
    let launches: Vec<_> = burst
        .iter()
        .map(|id| {
            let socket = agent.socket.clone();
            let id = id.clone();
            std::thread::spawn(move || launch_over(&socket, &id))
        })
        .collect();
    for _ in 0..3 {
        let second = second_agent(&agent);
        assert!(!second.status.success());
        assert!(String::from_utf8_lossy(&second.stderr).contains(&expected));
    }
    for launch in launches {
        let (status, body) = launch.join().unwrap();
        assert_eq!(status, 201, "a launch of the first agent failed: {body}");
    }
    for id in ids.iter().chain(&burst) {
        let container = state_of(&agent, id);
        assert_eq!(container["state"], "running", "{id}: {container}");
        assert!(alive(container["pid"].as_u64().unwrap()), "{id}");
    }
    assert!(!agent.log().contains("interrupted"), "{}", agent.log());
}

/// POSTs a launch on its own connection; returns the status and body.
fn launch_over(socket: &Path, id: &str) -> (u16, String) {
    let body = sleeper(id).to_string();
    let mut stream = UnixStream::connect(socket).unwrap();
    write!(
        stream,
        "POST /v1/containers HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[test]
fn a_corrupt_record_is_quarantined_and_nothing_else_is_touched() {
    require_root!();
    let mut agent = Agent::start();
    let healthy = agent.launch(sleeper("healthy"));
    let damaged = agent.launch(sleeper("damaged"));
    let damaged_pid = damaged["pid"].as_u64().unwrap();
    agent.kill_agent();

    // A truncated runtime record, and a truncated work-dir copy of the
    // other container's record.
    let record = agent.runtime_dir.join("containers/damaged/container.json");
    let bytes = std::fs::read(&record).unwrap();
    std::fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
    let copy = agent.work_dir.join("records/healthy.json");
    let bytes = std::fs::read(&copy).unwrap();
    std::fs::write(&copy, &bytes[..bytes.len() / 3]).unwrap();

    for round in 0..2 {
        // The second round: the quarantine is remembered across restarts.
        agent.start_again();
        let container = state_of(&agent, "healthy");
        assert_eq!(container["state"], "running", "round {round}: {container}");
        assert_eq!(container["pid"], healthy["pid"]);
        let stats = agent.api("GET", "/v1/containers/healthy/stats", None);
        assert_eq!(stats.status, 200, "round {round}");

        let list = agent.api("GET", "/v1/containers", None).body;
        let unknown = list
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "damaged")
            .unwrap_or_else(|| panic!("damaged not listed: {list}"))
            .clone();
        assert_eq!(unknown["state"], "unknown", "{unknown}");
        let message = unknown["message"].as_str().unwrap();
        assert!(message.contains("container.json.corrupt-"), "{message}");
        assert!(
            alive(damaged_pid),
            "round {round}: the damaged container's process was killed"
        );
        let log = agent.log();
        for word in ["reboot", "agent-lost", "interrupted"] {
            assert!(!log.contains(word), "round {round}: {word} in\n{log}");
        }
        agent.kill_agent();
    }
    assert!(!record.exists());
    agent.start_again();

    // `rm` refuses without force; with force it ends what the container ran.
    let refused = agent.api("DELETE", "/v1/containers/damaged", None);
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    let removed = agent.api("DELETE", "/v1/containers/damaged?force=true", None);
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    eventually(
        Duration::from_secs(10),
        "the damaged container's end",
        || (!alive(damaged_pid)).then_some(()),
    );
    assert!(!agent.runtime_dir.join("containers/damaged").exists());
    assert_eq!(state_of(&agent, "healthy")["state"], "running");
}

#[test]
fn a_forced_remove_during_a_launch_waits_for_it_and_kills_it() {
    require_root!();
    let gate = tempfile::tempdir().unwrap();
    let agent = Agent::start_with_env(
        &[("BERTH_TEST_LAUNCH_GATE", gate.path().to_str().unwrap())],
        "",
    );
    let socket = agent.socket.clone();
    let launch = std::thread::spawn(move || launch_over(&socket, "slow"));
    eventually(Duration::from_secs(20), "the launch at the gate", || {
        gate.path().join("slow.waiting").exists().then_some(())
    });
    assert_eq!(state_of(&agent, "slow")["state"], "created");

    let socket = agent.socket.clone();
    let remove = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(socket).unwrap();
        stream
            .write_all(
                b"DELETE /v1/containers/slow?force=true HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    });
    // The remove waits while the launch is held.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !remove.is_finished(),
        "the remove did not wait for the launch"
    );
    std::fs::write(gate.path().join("slow.go"), b"").unwrap();

    let (status, body) = launch.join().unwrap();
    assert_eq!(status, 201, "{body}");
    let launched: Value =
        serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or_default();
    let answer = remove.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    if let Some(pid) = launched["pid"].as_u64() {
        assert!(!alive(pid), "the launched process still runs");
    }
    assert_eq!(agent.api("GET", "/v1/containers/slow", None).status, 404);
    eventually(Duration::from_secs(10), "no leftovers", || {
        agent.leftovers().is_empty().then_some(())
    });
}

#[test]
fn user_errors_found_at_launch_are_400_naming_the_field() {
    require_root!();
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let rootfs = rootfs.to_str().unwrap();
    let cases = [
        (
            "workdir",
            json!({"command": ["true"], "rootfs": rootfs, "workdir": "/nowhere"}),
        ),
        (
            "workdir",
            json!({"command": ["true"], "rootfs": rootfs, "workdir": "/etc/passwd"}),
        ),
        ("rootfs", json!({"command": ["true"], "rootfs": "/"})),
        ("rootfs", json!({"command": ["true"], "rootfs": "/usr/.."})),
        (
            "network",
            json!({"command": ["true"], "network": "ns:/etc/hostname"}),
        ),
        (
            "network",
            json!({"command": ["true"], "network": "ns:/proc/1/ns/mnt"}),
        ),
        (
            "user.uid",
            json!({"command": ["true"], "user": {"uid": 4294967295u32}}),
        ),
        (
            "user.gid",
            json!({"command": ["true"], "user": {"uid": 1, "gid": 2147483648u32}}),
        ),
        (
            "log.max_size",
            json!({"command": ["true"], "log": {"max_size": 2u64 << 30}}),
        ),
        ("command", json!({"command": ["echo", "x".repeat(200_000)]})),
    ];
    for (field, request) in cases {
        let answer = agent.api("POST", "/v1/containers", Some(request.clone()));
        assert_eq!(answer.status, 400, "{field}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("invalid {field}:")),
            "{field}: {message}"
        );
        assert!(
            agent.leftovers().is_empty(),
            "{field}: {:?}",
            agent.leftovers()
        );
    }
    // The workdir is checked in the container's view: one that exists
    // there works.
    let ok = agent.launch(json!({"command": ["pwd"], "rootfs": rootfs, "workdir": "/bin"}));
    agent.wait(ok["id"].as_str().unwrap());
}

/// Sends raw bytes on a new connection.
fn raw(socket: &Path, bytes: &[u8]) -> UnixStream {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

/// Reads until the server closes the connection; returns what came and
/// how long it took.
fn read_to_close(stream: &mut UnixStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

#[test]
fn hostile_api_clients_are_cut_off_and_hold_nobody_up() {
    require_root!();
    let agent =
        Agent::start_with_config("[api]\nheader_timeout_seconds = 1\nbody_timeout_seconds = 1\n");
    // Not JSON: 415 with the error body.
    let body = br#"{"command": ["true"]}"#;
    let mut request = format!(
        "POST /v1/containers HTTP/1.1\r\nHost: berth\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut stream = raw(&agent.socket, &request);
    let (answer, _) = read_to_close(&mut stream, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert!(answer.contains("\"unsupported_media_type\""), "{answer}");
    // No content type at all: also 415.
    let mut request = format!(
        "POST /v1/containers HTTP/1.1\r\nHost: berth\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut stream = raw(&agent.socket, &request);
    let (answer, _) = read_to_close(&mut stream, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");

    // Slow clients: half a header, half a body, many of each.
    let sent = Instant::now();
    let mut half_headers: Vec<UnixStream> = (0..20)
        .map(|_| raw(&agent.socket, b"GET /v1/info HTTP/1.1\r\nHost: ber"))
        .collect();
    let mut half_bodies: Vec<UnixStream> = (0..20)
        .map(|_| {
            raw(
                &agent.socket,
                b"POST /v1/containers HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"command\": ",
            )
        })
        .collect();
    // Meanwhile everyone else is served at once.
    let start = Instant::now();
    let id = agent.launch(json!({"command": ["true"]}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    agent.wait(&id);
    assert_eq!(agent.api("GET", "/v1/info", None).status, 200);
    let served_in = start.elapsed();
    eprintln!("launch, wait and info beside 40 stalled clients: {served_in:?}");
    assert!(served_in < Duration::from_secs(1), "{served_in:?}");

    for stream in &mut half_headers {
        let (answer, _) = read_to_close(stream, Duration::from_secs(5));
        let took = sent.elapsed();
        eprintln!("half a header cut off after {took:?}");
        assert!(took > Duration::from_millis(900), "{took:?}");
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
    for stream in &mut half_bodies {
        let (answer, _) = read_to_close(stream, Duration::from_secs(5));
        let took = sent.elapsed();
        eprintln!("half a body cut off after {took:?}");
        assert!(took > Duration::from_millis(900), "{took:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
    // A body over the limit.
    let mut stream = raw(
        &agent.socket,
        b"POST /v1/containers HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n",
    );
    let _ = stream.write_all(&vec![b' '; 4_000_000]);
    let (answer, _) = read_to_close(&mut stream, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(agent.api("GET", "/v1/info", None).status, 200);
}

/// Runs the CLI with its stdout a pipe whose reader is gone.
fn berth_into_closed_pipe(agent: &Agent, args: &[&str]) -> std::process::Output {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--socket")
        .arg(&agent.socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn the_cli_ends_quietly_when_its_output_is_closed_and_escapes_commands() {
    require_root!();
    let agent = Agent::start();
    // A command that would clear the screen and break the table.
    agent.launch(json!({
        "id": "noisy",
        "command": ["sh", "-c", ": \u{1b}[2J\n i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; sleep 1000"],
    }));
    eventually(Duration::from_secs(20), "output", || {
        (agent.stdout("noisy").lines().count() == 20000).then_some(())
    });
    for args in [
        &["ps"][..],
        &["ps", "--json"],
        &["inspect", "noisy"],
        &["logs", "noisy"],
        &["logs", "noisy", "--stream", "all"],
        &["info"],
        &["info", "--json"],
        &["gc", "--json"],
        &["stats", "--no-stream"],
        &["files", "ls", "noisy", "/"],
    ] {
        let out = berth_into_closed_pipe(&agent, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    // A real pipe closed early by its reader, as a shell makes it.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} --socket {} logs noisy | head -1",
            env!("CARGO_BIN_EXE_berth"),
            agent.socket.display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line 0\n");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "quiet success, decision 0012");

    let ps = agent.berth(&["ps"]);
    let table = String::from_utf8(ps.stdout).unwrap();
    assert!(!table.contains('\u{1b}'), "{table}");
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("\\x1b[2J"), "{table}");
}
