//! Health checks (issue 12 item 5): HTTP, TCP and command checks run by a
//! per-container checker from inside the container's network namespace,
//! the start period, `kill` and `restart` on unhealthy, and checks going on
//! while the agent is down. Real agent, busybox containers, as root.

mod common;

use std::time::Duration;

use common::{busybox_rootfs, eventually, Agent};
use serde_json::{json, Value};

fn inspect(agent: &Agent, id: &str) -> Value {
    let answer = agent.api("GET", &format!("/v1/containers/{id}"), None);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

fn health_is(agent: &Agent, id: &str, status: &str) -> Option<Value> {
    let c = inspect(agent, id);
    (c["health"]["status"] == status).then_some(c)
}

/// A busybox root with httpd, killall and a page to serve.
fn rootfs(dir: &std::path::Path) -> String {
    let rootfs = busybox_rootfs(dir);
    for applet in ["httpd", "killall", "rm", "test"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::write(rootfs.join("www/index.html"), "ok\n").unwrap();
    rootfs.display().to_string()
}

fn exec(agent: &Agent, id: &str, command: &[&str]) {
    let answer = agent.api(
        "POST",
        &format!("/v1/containers/{id}/exec"),
        Some(json!({ "command": command })),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

const HTTPD: &str = "httpd -p 127.0.0.1:8080 -h /www && exec sleep 1000";

#[test]
fn an_http_check_turns_healthy_then_unhealthy_after_retries() {
    require_root!();
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    // Through the CLI's flags.
    let out = agent.berth(&[
        "run",
        "-d",
        "--name",
        "web",
        "--rootfs",
        &root,
        "--network",
        "none",
        "--health-http",
        "8080/index.html",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "1s",
        "--health-retries",
        "3",
        "--",
        "sh",
        "-c",
        HTTPD,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let healthy = eventually(Duration::from_secs(30), "healthy", || {
        health_is(&agent, "web", "healthy")
    });
    let last = healthy["health"]["log"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["exit_code"], 0);
    assert!(last["output"].as_str().unwrap().contains("200"), "{last}");
    assert_eq!(healthy["health_check"]["http"], "8080/index.html");
    let ps = String::from_utf8_lossy(&agent.berth(&["ps"]).stdout).into_owned();
    assert!(ps.contains("running (healthy)"), "{ps}");

    exec(&agent, "web", &["killall", "httpd"]);
    let unhealthy = eventually(Duration::from_secs(30), "unhealthy", || {
        health_is(&agent, "web", "unhealthy")
    });
    let health = &unhealthy["health"];
    assert!(health["failing_streak"].as_u64().unwrap() >= 3, "{health}");
    let log = health["log"].as_array().unwrap();
    assert!(log.len() <= 5, "{health}");
    // Exactly `retries` failures turned it unhealthy.
    let failures = log.iter().rev().take_while(|r| r["exit_code"] == 1).count();
    assert!(failures >= 3, "{health}");
    for result in log {
        assert!(result["start"].is_string() && result["end"].is_string());
    }
    let changes: Vec<&str> = health["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["starting", "healthy", "unhealthy"]);
    // `report`: it runs on.
    assert_eq!(unhealthy["state"], "running");
}

#[test]
fn tcp_checks_connect_inside_the_container_never_on_the_host() {
    require_root!();
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    // A listener on the host's loopback: a check run from the host's
    // network namespace would find it.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    agent.launch(json!({"id": "isolated", "rootfs": root, "network": "none",
        "command": ["sleep", "1000"],
        "health": {"tcp": port, "interval": "100ms", "timeout": "500ms", "retries": 2}}));
    let c = eventually(Duration::from_secs(30), "unhealthy", || {
        health_is(&agent, "isolated", "unhealthy")
    });
    assert!(
        c["health"]["log"][0]["output"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{c}"
    );
    // The container's own listener is found.
    agent.launch(json!({"id": "served", "rootfs": root, "network": "none",
        "command": ["sh", "-c", HTTPD],
        "health": {"tcp": 8080, "interval": "100ms", "timeout": "500ms"}}));
    eventually(Duration::from_secs(30), "healthy", || {
        health_is(&agent, "served", "healthy")
    });
}

#[test]
fn kill_on_unhealthy_ends_the_container_with_reason_unhealthy() {
    require_root!();
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    agent.launch(json!({"id": "doomed", "rootfs": root, "network": "none",
        "command": ["sh", "-c", HTTPD],
        "health": {"http": "8080/", "interval": "100ms", "timeout": "1s", "retries": 2,
                   "on_unhealthy": "kill"}}));
    eventually(Duration::from_secs(30), "healthy", || {
        health_is(&agent, "doomed", "healthy")
    });
    exec(&agent, "doomed", &["killall", "httpd"]);
    let ended = agent.wait("doomed");
    assert_eq!(ended["reason"], "unhealthy", "{ended}");
    assert_eq!(ended["health"]["status"], "unhealthy");
    assert_eq!(ended["health"]["killed"], true);
    assert_eq!(ended["exit_code"], 137);
}

#[test]
fn failures_in_the_start_period_do_not_count_and_commands_run_as_exec() {
    require_root!();
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    // Ready once the test says so, after a failed check was seen; one
    // failure would be enough to be unhealthy. (Ready after a fixed second
    // raced the first check's own start on the slow VM.)
    agent.launch(json!({"id": "slow", "rootfs": root, "network": "none",
        "command": ["sleep", "1000"],
        "health": {"cmd": ["sh", "-c", "echo checking; test -e /tmp/ready"],
                   "interval": "100ms", "timeout": "2s", "retries": 1,
                   "start_period": "1m"}}));
    eventually(Duration::from_secs(30), "a failed check", || {
        let c = agent.api("GET", "/v1/containers/slow", None).body;
        c["health"]["log"]
            .as_array()?
            .iter()
            .any(|r| r["exit_code"] == 1)
            .then_some(())
    });
    exec(&agent, "slow", &["touch", "/tmp/ready"]);
    let c = eventually(Duration::from_secs(30), "healthy", || {
        health_is(&agent, "slow", "healthy")
    });
    let changes: Vec<&str> = c["health"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["starting", "healthy"], "{c}");
    let log = c["health"]["log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["output"], "checking\n");
    // The failures before the first success were there, and ignored.
    assert!(
        log.iter()
            .any(|r| r["exit_code"] == 1 && r["ignored"] == true),
        "{c}"
    );
    // After the first success the start period is over: one failure counts.
    exec(&agent, "slow", &["rm", "/tmp/ready"]);
    let c = eventually(Duration::from_secs(30), "unhealthy", || {
        health_is(&agent, "slow", "unhealthy")
    });
    assert_eq!(c["health"]["failing_streak"], 1);
}

#[test]
fn restart_on_unhealthy_restarts_through_the_restart_machinery() {
    require_root!();
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    let first = agent.launch(json!({"id": "phoenix", "rootfs": root, "network": "none",
        "command": ["sh", "-c", "touch /tmp/ok; exec sleep 1000"],
        "health": {"cmd": ["test", "-e", "/tmp/ok"], "interval": "100ms",
                   "timeout": "2s", "retries": 1, "on_unhealthy": "restart"}}));
    eventually(Duration::from_secs(30), "healthy", || {
        health_is(&agent, "phoenix", "healthy")
    });
    exec(&agent, "phoenix", &["rm", "/tmp/ok"]);
    let again = eventually(Duration::from_secs(30), "restarted and healthy", || {
        let c = inspect(&agent, "phoenix");
        (c["restart"]["count"] == 1 && c["health"]["status"] == "healthy").then_some(c)
    });
    assert_ne!(again["pid"], first["pid"]);
    assert_eq!(again["state"], "running");
}

#[test]
fn checks_go_on_while_the_agent_is_down() {
    require_root!();
    let mut agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    agent.launch(json!({"id": "steady", "rootfs": root, "network": "none",
        "command": ["sh", "-c", HTTPD],
        "health": {"http": "8080/", "interval": "100ms", "timeout": "1s"}}));
    eventually(Duration::from_secs(30), "healthy", || {
        health_is(&agent, "steady", "healthy")
    });
    let file = agent.runtime_dir.join("containers/steady/health.json");
    let last_end = |file: &std::path::Path| -> String {
        let state: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        state["log"].as_array().unwrap().last().unwrap()["end"]
            .as_str()
            .unwrap()
            .to_string()
    };
    agent.kill_agent();
    let before = last_end(&file);
    eventually(
        Duration::from_secs(10),
        "a check while the agent is down",
        || (last_end(&file) > before).then_some(()),
    );
    agent.start_again();
    let c = eventually(Duration::from_secs(30), "healthy after the restart", || {
        health_is(&agent, "steady", "healthy")
    });
    assert!(
        c["health"]["log"].as_array().unwrap().last().unwrap()["end"]
            .as_str()
            .unwrap()
            > before.as_str()
    );
}

#[test]
fn bad_health_checks_are_refused_naming_the_field() {
    require_root!();
    let agent = Agent::start();
    for (health, field) in [
        (json!({}), "health"),
        (json!({"tcp": 80, "http": "80/"}), "health"),
        (json!({"http": "port/"}), "health.http"),
        (json!({"tcp": 80, "interval": "5"}), "interval"),
        (json!({"tcp": 80, "retries": 0}), "health.retries"),
        (json!({"tcp": 80, "on_unhealthy": "panic"}), "on_unhealthy"),
    ] {
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({"command": ["true"], "health": health})),
        );
        assert_eq!(answer.status, 400, "{health}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{health}: {message}");
    }
    let out = agent.berth(&[
        "run",
        "--health-interval",
        "1x",
        "--health-tcp",
        "1",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = agent.berth(&["run", "--health-retries", "2", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(agent.leftovers(), Vec::<String>::new());
}

#[test]
fn a_checker_that_died_is_started_again_by_the_next_agent() {
    require_root!();
    let mut agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    agent.launch(json!({"id": "orphan", "rootfs": root, "network": "none",
        "command": ["sh", "-c", HTTPD],
        "health": {"tcp": 8080, "interval": "100ms", "timeout": "1s"}}));
    eventually(Duration::from_secs(30), "healthy", || {
        health_is(&agent, "orphan", "healthy")
    });
    let file = agent
        .runtime_dir
        .join("containers/orphan/health-checker.json");
    let checker: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let pid = checker["pid"].as_u64().unwrap() as i32;
    agent.kill_agent();
    // SAFETY: kill(2) of the checker this test's agent started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    eventually(Duration::from_secs(10), "the checker gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z")).then_some(())
    });
    agent.start_again();
    eventually(Duration::from_secs(30), "a new checker, healthy", || {
        let checker: Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
        (checker["pid"].as_u64()? as i32 != pid).then_some(())?;
        health_is(&agent, "orphan", "healthy")
    });
    assert!(agent.log().contains("health checker is gone"));
}

#[test]
fn a_command_check_that_times_out_fails_and_leaves_nothing_running() {
    require_root!();
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    agent.launch(json!({"id": "hung", "rootfs": root, "network": "none",
        "command": ["sleep", "1000"],
        "health": {"cmd": ["sleep", "4242"], "interval": "50ms", "timeout": "200ms",
                   "retries": 3}}));
    let c = eventually(Duration::from_secs(30), "unhealthy", || {
        health_is(&agent, "hung", "unhealthy")
    });
    let output = c["health"]["log"][0]["output"].as_str().unwrap();
    assert!(output.contains("timed out"), "{c}");
    // Three checks timed out; at most the one under way still runs.
    let hung = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x004242\x00")
            })
            .count()
    };
    // A check killed a moment ago may not have exited yet; a leaked one
    // never does.
    eventually(Duration::from_secs(10), "at most one check running", || {
        (hung() <= 1).then_some(())
    });
}
