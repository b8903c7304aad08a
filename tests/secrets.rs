//! Secrets and live config files (issue 17 items 3 and 4, decision 0034):
//! a secret is private to the container's user, never on disk, in a
//! record, a log or an answer; it is rotated atomically and a container
//! cannot redirect the rotation; a config update reaches the container with
//! its change action; bad input is a 400 naming the field.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::{busybox_rootfs, eventually, Agent};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A value no file on this machine holds by chance.
fn unique(what: &str) -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .unwrap();
    format!("{what}-{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `sha256sum FILE` prints for `value`: the container proves it
/// reads the value without the value passing through an exec's output
/// (which the exec helper keeps in the runtime dir).
fn sha256_line(value: &str, file: &str) -> String {
    use sha2::Digest;
    format!("{}  {file}\n", hex(&sha2::Sha256::digest(value.as_bytes())))
}

fn read_secret(agent: &Agent, id: &str, uid: u32, file: &str) -> Value {
    exec_as(agent, id, uid, &["/bin/busybox", "sha256sum", file])
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

fn exec_as(agent: &Agent, id: &str, uid: u32, command: &[&str]) -> Value {
    let answer = agent.api(
        "POST",
        &format!("/v1/containers/{id}/exec"),
        Some(json!({ "command": command, "user": {"uid": uid} })),
    );
    assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, agent.log());
    answer.body
}

/// Every regular file below `dir` whose content holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if meta.is_file() {
            if let Ok(content) = std::fs::read(&path) {
                if content.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

fn assert_nowhere(agent: &Agent, value: &str, extra: &[&Path]) {
    let needle = value.as_bytes();
    let encoded = b64(needle);
    for dir in [
        &agent.work_dir,
        &agent.runtime_dir,
        &agent.dir.path().to_path_buf(),
    ]
    .into_iter()
    .map(|p| p.as_path())
    .chain(extra.iter().copied())
    {
        for n in [needle, encoded.as_bytes()] {
            let found = files_holding(dir, n);
            assert!(found.is_empty(), "the secret is on disk in {found:?}");
        }
    }
    assert!(
        !agent.log().contains(value),
        "the secret is in the agent log"
    );
}

fn put(agent: &Agent, id: &str, kind: &str, name: &str, value: &str) -> common::Answer {
    agent.api(
        "PUT",
        &format!("/v1/containers/{id}/{kind}/{name}"),
        Some(json!({ "value_base64": b64(value.as_bytes()) })),
    )
}

#[test]
fn a_secret_is_private_to_the_user_never_on_disk_rotated_and_gone_at_the_end() {
    require_root!();
    let agent = Agent::start();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let first = unique("first-secret");
    agent.launch(json!({
        "id": "sec",
        "rootfs": rootfs,
        "user": {"uid": 1000, "gid": 1000},
        "command": ["sh", "-c", "sleep 1000"],
        "secrets": [{"name": "db", "value_base64": b64(first.as_bytes())}],
    }));

    // The container's user reads it; the file is 0400 and the dir 0500,
    // both its own; another uid cannot read it.
    let out = read_secret(&agent, "sec", 1000, "/run/secrets/db");
    assert_eq!(
        out["stdout"],
        sha256_line(&first, "/run/secrets/db"),
        "{out}"
    );
    let out = exec_as(
        &agent,
        "sec",
        1000,
        &[
            "/bin/busybox",
            "stat",
            "-c",
            "%a %u:%g %F",
            "/run/secrets",
            "/run/secrets/db",
        ],
    );
    assert_eq!(
        out["stdout"], "500 1000:1000 directory\n400 1000:1000 regular file\n",
        "{out}"
    );
    let other = read_secret(&agent, "sec", 2000, "/run/secrets/db");
    assert_ne!(other["exit_code"], 0, "{other}");
    assert!(
        other["stderr"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{other}"
    );
    // A tmpfs of its own, read-only, nosuid, nodev, noexec.
    let mounts = exec_as(&agent, "sec", 1000, &["cat", "/proc/self/mountinfo"]);
    let line = mounts["stdout"]
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/run/secrets"))
        .unwrap_or_else(|| panic!("no /run/secrets mount: {mounts}"))
        .to_string();
    assert!(line.contains(" - tmpfs "), "{line}");
    let options = line.split(' ').nth(5).unwrap();
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(options.split(',').any(|o| o == option), "{option}: {line}");
    }
    // Size-capped; never swapped out where the kernel has `noswap` (6.4+).
    let super_options = line.rsplit(' ').next().unwrap();
    assert!(super_options.contains("size="), "{line}");
    if kernel_at_least(6, 4) {
        assert!(super_options.split(',').any(|o| o == "noswap"), "{line}");
    }

    // Not in inspect, the list, on disk, or in any log.
    let inspect = agent.api("GET", "/v1/containers/sec", None);
    assert_eq!(inspect.status, 200);
    let shown = String::from_utf8_lossy(&inspect.raw).into_owned();
    assert!(!shown.contains(&first) && !shown.contains(&b64(first.as_bytes())));
    let list = agent.api("GET", "/v1/containers", None);
    assert!(!String::from_utf8_lossy(&list.raw).contains(&first));
    assert_nowhere(&agent, &first, &[]);

    // Rotation: the container sees the new value at once.
    let second = unique("second-secret");
    let answer = put(&agent, "sec", "secrets", "db", &second);
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    let out = read_secret(&agent, "sec", 1000, "/run/secrets/db");
    assert_eq!(
        out["stdout"],
        sha256_line(&second, "/run/secrets/db"),
        "{out}"
    );
    let out = exec_as(&agent, "sec", 1000, &["ls", "-a", "/run/secrets"]);
    assert_eq!(out["stdout"], ".\n..\ndb\n", "no temporary left: {out}");
    // An unknown name is a 404 and creates nothing.
    assert_eq!(put(&agent, "sec", "secrets", "nope", "x").status, 404);
    assert_nowhere(&agent, &second, &[]);

    // Gone when the container ends: no mount anywhere on the host.
    let stop = agent.api(
        "POST",
        "/v1/containers/sec/stop",
        Some(json!({"timeout": 1})),
    );
    assert_eq!(stop.status, 200, "{:?}", stop.body);
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_mounts.contains("/run/secrets"),
        "a secrets mount on the host: {host_mounts}"
    );
    assert_nowhere(&agent, &first, &[]);
    assert_nowhere(&agent, &second, &[]);
    let rm = agent.api("DELETE", "/v1/containers/sec", None);
    assert_eq!(rm.status, 204, "{:?}", rm.body);
    // Nor in the event stream: every kept event, replayed up to now.
    let until = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let events = agent.api("GET", &format!("/v1/events?since=0&until={until}"), None);
    assert_eq!(events.status, 200);
    let events = String::from_utf8_lossy(&events.raw).into_owned();
    assert!(events.contains("\"destroy\""), "{events}");
    for value in [&first, &second] {
        assert!(!events.contains(value.as_str()), "{events}");
        assert!(!events.contains(&b64(value.as_bytes())), "{events}");
    }
}

#[test]
fn a_container_cannot_redirect_the_rotation_with_a_symlink() {
    require_root!();
    let agent = Agent::start();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let first = unique("attack-first");
    agent.launch(json!({
        "id": "att",
        "rootfs": rootfs,
        "command": ["sh", "-c", "sleep 1000"],
        "secrets": [{"name": "db", "value_base64": b64(first.as_bytes())}],
    }));
    // The container's root, owner of the dir, tries to replace the secret
    // with a link to a file of its own (the sandbox is a host dir) and to
    // loosen the dir: the mount is read-only.
    let attack = exec_as(
        &agent,
        "att",
        0,
        &[
            "sh",
            "-c",
            "chmod 0700 /run/secrets; rm -f /run/secrets/db; \
             ln -sf /sandbox/stolen /run/secrets/db; \
             ln -sf /sandbox/stolen /run/secrets/..db.tmp; \
             ls -la /run/secrets",
        ],
    );
    let listing = attack["stdout"].as_str().unwrap();
    assert!(!listing.contains("->"), "a link was planted: {attack}");
    assert!(
        attack["stderr"].as_str().unwrap().contains("Read-only"),
        "{attack}"
    );
    // The rotation writes the tmpfs, nowhere else.
    let second = unique("attack-second");
    assert_eq!(put(&agent, "att", "secrets", "db", &second).status, 204);
    let out = read_secret(&agent, "att", 0, "/run/secrets/db");
    assert_eq!(
        out["stdout"],
        sha256_line(&second, "/run/secrets/db"),
        "{out}"
    );
    assert!(
        !agent.sandbox("att").join("stolen").exists(),
        "the rotation wrote through the container's link"
    );
    assert_nowhere(&agent, &second, &[tmp.path()]);
    agent.api(
        "POST",
        "/v1/containers/att/stop",
        Some(json!({"timeout": 1})),
    );
}

#[test]
fn a_config_update_reaches_a_shell_trapping_hup() {
    require_root!();
    let agent = Agent::start();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    agent.launch(json!({
        "id": "cfg",
        "rootfs": rootfs,
        "command": ["sh", "-c",
            "trap 'echo \"got $(cat /etc/app/app.conf)\"' HUP; \
             echo \"start $(cat /etc/app/app.conf)\"; \
             while true; do sleep 0.05; done"],
        "config_files": [{"name": "app.conf", "value_base64": b64(b"v1"), "path": "/etc/app"}],
        "config_change": "signal:SIGHUP",
    }));
    eventually(Duration::from_secs(10), "the first config", || {
        agent.stdout("cfg").contains("start v1").then_some(())
    });
    // The Kubernetes layout: NAME -> ..data/NAME, ..data -> a generation.
    let readlink = |path: &str| {
        let out = exec_as(&agent, "cfg", 0, &["/bin/busybox", "readlink", path]);
        out["stdout"].as_str().unwrap().trim().to_string()
    };
    let links = [readlink("/etc/app/app.conf"), readlink("/etc/app/..data")];
    let out = &links;
    assert_eq!(links[0], "..data/app.conf", "{out:?}");
    assert!(links[1].starts_with("..20"), "{out:?}");
    let refused = exec_as(
        &agent,
        "cfg",
        0,
        &["sh", "-c", "echo x > /etc/app/app.conf"],
    );
    assert_ne!(
        refused["exit_code"], 0,
        "the config dir is writable: {refused}"
    );

    let answer = put(&agent, "cfg", "configs", "app.conf", "v2");
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    eventually(Duration::from_secs(10), "the HUP handler's re-read", || {
        agent.stdout("cfg").contains("got v2").then_some(())
    });
    assert_ne!(
        readlink("/etc/app/..data"),
        links[1],
        "..data was not swapped"
    );
    let out = exec_as(&agent, "cfg", 0, &["ls", "-a", "/etc/app"]);
    assert_eq!(
        out["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("..20"))
            .count(),
        1,
        "the old generation is removed: {out}"
    );
    let inspect = agent.api("GET", "/v1/containers/cfg", None);
    assert_eq!(inspect.body["state"], "running", "{:?}", inspect.body);
    agent.api(
        "POST",
        "/v1/containers/cfg/stop",
        Some(json!({"timeout": 1})),
    );
}

#[test]
fn a_config_update_with_restart_restarts_the_container_once() {
    require_root!();
    let agent = Agent::start();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let secret = unique("restart-secret");
    agent.launch(json!({
        "id": "rst",
        "rootfs": rootfs,
        "command": ["sh", "-c", "echo \"run $(cat /etc/app/app.conf) $(cat /run/secrets/s | head -c 6)\"; sleep 1000"],
        "config_files": [{"name": "app.conf", "value_base64": b64(b"v1"), "path": "/etc/app"}],
        "secrets": [{"name": "s", "value_base64": b64(secret.as_bytes())}],
        "config_change": "restart",
    }));
    eventually(Duration::from_secs(10), "the first run", || {
        agent.stdout("rst").contains("run v1 restar").then_some(())
    });
    let answer = put(&agent, "rst", "configs", "app.conf", "v2");
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    // The restarted container has the new config and its secret again,
    // from the agent's memory.
    eventually(Duration::from_secs(20), "the restarted run", || {
        agent.stdout("rst").contains("run v2 restar").then_some(())
    });
    let runs = agent
        .stdout("rst")
        .lines()
        .filter(|l| l.starts_with("run "))
        .count();
    assert_eq!(runs, 2, "restarted once: {}", agent.stdout("rst"));
    let inspect = agent.api("GET", "/v1/containers/rst", None);
    assert_eq!(inspect.body["state"], "running", "{:?}", inspect.body);
    assert_nowhere(&agent, &secret, &[]);
    agent.api(
        "POST",
        "/v1/containers/rst/stop",
        Some(json!({"timeout": 1})),
    );
}

#[test]
fn bad_input_is_a_400_naming_the_field_and_makes_nothing() {
    require_root!();
    let agent = Agent::start();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let secret = unique("bad-input");
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let ok = json!({"name": "ok", "value_base64": b64(secret.as_bytes())});
    let cases = [
        (
            json!({"secrets": [{"name": "../x", "value_base64": "eA=="}]}),
            "secrets[0].name",
        ),
        (
            json!({"secrets": [ok, {"name": ".hidden", "value_base64": "eA=="}]}),
            "secrets[1].name",
        ),
        (json!({"secrets": [{"name": "a"}]}), "secrets[0]"),
        (
            json!({"secrets": [{"name": "a", "value_base64": "!!"}]}),
            "secrets[0].value_base64",
        ),
        (
            json!({"secrets": [{"name": "a", "value_base64": "eA==", "file": "/etc/hostname"}]}),
            "secrets[0]",
        ),
        (
            json!({"secrets": [{"name": "a", "file": "relative"}]}),
            "secrets[0].file",
        ),
        (
            json!({"secrets": [{"name": "a", "file": fifo}]}),
            "secrets[0].file",
        ),
        (json!({"secrets": [ok, ok]}), "secrets[1].name"),
        (
            json!({"secrets": [{"name": "a", "value_base64": "eA==", "env": "1BAD"}]}),
            "secrets[0].env",
        ),
        (
            json!({"config_files": [{"name": "c", "value_base64": "eA==", "path": "etc"}]}),
            "config_files[0].path",
        ),
        (
            json!({"config_files": [{"name": "c", "value_base64": "eA==", "path": "/run/secrets"}]}),
            "config_files[0].path",
        ),
        (
            json!({"config_files": [{"name": "c", "value_base64": "eA==", "path": "/a/../b"}]}),
            "config_files[0].path",
        ),
        (json!({"config_change": "reload"}), "config_change"),
        (
            json!({"rootfs": null, "config_files": [{"name": "c", "value_base64": "eA==", "path": "/nonexistent-berth-dir"}]}),
            "config_files[0].path",
        ),
        (json!({"config_change": "signal:NOPE"}), "config_change"),
    ];
    let many: Vec<Value> = (0..17)
        .map(|i| json!({"name": format!("c{i}"), "value_base64": "eA==", "path": format!("/etc/d{i}")}))
        .collect();
    let cases = cases
        .into_iter()
        .chain([(json!({ "config_files": many }), "config_files")]);
    for (extra, field) in cases {
        let mut request = json!({"id": "bad", "rootfs": rootfs, "command": ["true"]});
        for (k, v) in extra.as_object().unwrap() {
            request[k] = v.clone();
        }
        let answer = agent.api("POST", "/v1/containers", Some(request));
        assert_eq!(answer.status, 400, "{field}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{field} not named in {message:?}");
        assert!(
            !message.contains(&secret),
            "the value is in the error: {message}"
        );
    }
    let list = agent.api("GET", "/v1/containers", None);
    assert_eq!(
        list.body,
        json!([]),
        "half-made containers: {:?}",
        list.body
    );
    let made = agent.container_dirs();
    assert!(made.is_empty(), "left behind: {made:?}");
    assert_nowhere(&agent, &secret, &[]);

    // A bad update is a 400 naming its field and changes nothing.
    agent.launch(json!({
        "id": "upd",
        "rootfs": rootfs,
        "command": ["sh", "-c", "sleep 1000"],
        "secrets": [{"name": "s", "value_base64": b64(b"keep")}],
    }));
    let answer = agent.api(
        "PUT",
        "/v1/containers/upd/secrets/s",
        Some(json!({"value_base64": "!!"})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("value_base64"));
    let answer = agent.api("PUT", "/v1/containers/upd/secrets/s", Some(json!({})));
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let out = exec_as(&agent, "upd", 0, &["cat", "/run/secrets/s"]);
    assert_eq!(out["stdout"], "keep");
    assert_eq!(put(&agent, "nope", "secrets", "s", "x").status, 404);
    agent.api(
        "POST",
        "/v1/containers/upd/stop",
        Some(json!({"timeout": 1})),
    );
}

#[test]
fn the_cli_reads_the_files_and_secret_env_is_only_on_request() {
    require_root!();
    let agent = Agent::start();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let value = unique("cli-secret");
    let secret_file = tmp.path().join("db.txt");
    std::fs::write(&secret_file, &value).unwrap();
    let conf = tmp.path().join("app.conf");
    std::fs::write(&conf, "port=80\n").unwrap();
    let out = agent.berth(&[
        "run",
        "-d",
        "--name",
        "cli",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "--secret",
        &format!("db={}", secret_file.display()),
        "--secret",
        &format!("other={}", secret_file.display()),
        "--secret-env",
        "db=DB_PASSWORD",
        "--config-file",
        &format!("app.conf={}:/etc/app", conf.display()),
        "--",
        "sh",
        "-c",
        "sleep 1000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = read_secret(&agent, "cli", 0, "/run/secrets/other");
    assert_eq!(out["stdout"], sha256_line(&value, "/run/secrets/other"));
    let out = exec_as(&agent, "cli", 0, &["cat", "/etc/app/app.conf"]);
    assert_eq!(out["stdout"], "port=80\n");
    // Asked for: in the environment; not asked for: not.
    let out = exec_as(
        &agent,
        "cli",
        0,
        &[
            "sh",
            "-c",
            "printf %s \"$DB_PASSWORD\" | /bin/busybox sha256sum; env | grep -c -e other -e OTHER",
        ],
    );
    assert_eq!(
        out["stdout"],
        format!("{}0\n", sha256_line(&value, "-")),
        "{out}"
    );
    // `berth secret update` and `berth config update` read the file here.
    let newer = unique("cli-newer");
    std::fs::write(&secret_file, &newer).unwrap();
    let out = agent.berth(&[
        "secret",
        "update",
        "cli",
        "other",
        secret_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = read_secret(&agent, "cli", 0, "/run/secrets/other");
    assert_eq!(out["stdout"], sha256_line(&newer, "/run/secrets/other"));
    std::fs::write(&conf, "port=81\n").unwrap();
    let out = agent.berth(&[
        "config",
        "update",
        "cli",
        "app.conf",
        conf.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = exec_as(&agent, "cli", 0, &["cat", "/etc/app/app.conf"]);
    assert_eq!(out["stdout"], "port=81\n");
    let out = agent.berth(&[
        "secret",
        "update",
        "cli",
        "nope",
        secret_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("berth: ") && !stderr.contains(&newer),
        "{stderr}"
    );
    // Bad flags: one line, no request sent.
    let bad = agent.berth(&["run", "--secret", "novalue", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.starts_with("berth: ") && stderr.contains("--secret"),
        "{stderr}"
    );
    let bad = agent.berth(&["run", "--secret", "x=/nonexistent/file", "--", "true"]);
    assert!(!bad.status.success());
    agent.api(
        "POST",
        "/v1/containers/cli/stop",
        Some(json!({"timeout": 1})),
    );
}

#[test]
fn after_an_agent_restart_the_container_keeps_its_secret_and_updates_are_refused() {
    require_root!();
    let mut agent = Agent::start();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let value = unique("survives");
    agent.launch(json!({
        "id": "keep",
        "rootfs": rootfs,
        "command": ["sh", "-c", "sleep 1000"],
        "secrets": [{"name": "s", "value_base64": b64(value.as_bytes())}],
    }));
    agent.restart();
    let out = read_secret(&agent, "keep", 0, "/run/secrets/s");
    assert_eq!(
        out["stdout"],
        sha256_line(&value, "/run/secrets/s"),
        "{out}"
    );
    // The values were in the old agent's memory only.
    let answer = put(&agent, "keep", "secrets", "s", "new");
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("agent restart"), "{message}");
    assert_nowhere(&agent, &value, &[]);
    // A restart needs the values again: it fails saying so.
    let answer = agent.api(
        "POST",
        "/v1/containers/keep/restart",
        Some(json!({"timeout": 1})),
    );
    assert!(answer.status >= 400, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("agent restart"), "{message}");
    let inspect = agent.api("GET", "/v1/containers/keep", None);
    assert_eq!(inspect.body["state"], "exited", "{:?}", inspect.body);
}

#[test]
fn with_a_user_namespace_the_secret_belongs_to_the_mapped_user() {
    require_root!();
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        common::skip_missing_kernel_feature(
            "secrets::with_a_user_namespace",
            "the kernel allows no user namespaces",
        );
        return;
    }
    let agent = Agent::start_with_config("[userns]\nsubordinate_uids = \"3000000:131072\"\n");
    let value = unique("userns-secret");
    agent.launch(json!({
        "id": "uns",
        "userns": "auto",
        "user": {"uid": 1000, "gid": 1000},
        "command": ["sh", "-c", "sleep 1000"],
        "secrets": [{"name": "s", "value_base64": b64(value.as_bytes())}],
    }));
    let out = exec_as(
        &agent,
        "uns",
        1000,
        &[
            "sh",
            "-c",
            "stat -c '%a %u:%g' /run/secrets /run/secrets/s && sha256sum /run/secrets/s",
        ],
    );
    assert_eq!(
        out["stdout"],
        format!(
            "500 1000:1000\n400 1000:1000\n{}",
            sha256_line(&value, "/run/secrets/s")
        ),
        "{out}"
    );
    let other = exec_as(&agent, "uns", 2000, &["sh", "-c", "cat /run/secrets/s"]);
    assert_ne!(other["exit_code"], 0, "another user reads it: {other}");
    assert_nowhere(&agent, &value, &[]);
    agent.api(
        "POST",
        "/v1/containers/uns/stop",
        Some(json!({"timeout": 1})),
    );
}

#[test]
fn a_host_root_container_gets_them_in_its_private_run() {
    require_root!();
    let agent = Agent::start();
    let value = unique("host-root");
    agent.launch(json!({
        "id": "hr",
        "command": ["sleep", "1000"],
        "secrets": [{"name": "s", "value_base64": b64(value.as_bytes())}],
        "config_files": [{"name": "c.conf", "value_base64": b64(b"a=1"), "path": "/run/app"}],
    }));
    let out = exec_as(&agent, "hr", 0, &["sha256sum", "/run/secrets/s"]);
    assert_eq!(
        out["stdout"],
        sha256_line(&value, "/run/secrets/s"),
        "{out}"
    );
    let out = exec_as(&agent, "hr", 0, &["cat", "/run/app/c.conf"]);
    assert_eq!(out["stdout"], "a=1", "{out}");
    // Nothing was made on the host.
    assert!(!Path::new("/run/secrets/s").exists() && !Path::new("/run/app/c.conf").exists());
    assert_nowhere(&agent, &value, &[]);
    agent.api(
        "POST",
        "/v1/containers/hr/stop",
        Some(json!({"timeout": 1})),
    );
}
