//! seccomp by default: the attacks a container could make with the syscalls
//! Docker's profile denies, done for real, and proof they fail; the
//! per-container and agent settings; bad profiles refused.

mod common;

use common::{busybox_rootfs, Agent};
use serde_json::{json, Value};

/// A python probe that makes raw syscalls and prints `name=errno` (0 for
/// success), so that the errno is the filter's and not a libc wrapper's.
const PROBE: &str = r#"
import ctypes, os, platform, threading
libc = ctypes.CDLL(None, use_errno=True)
NR = {
    "x86_64": dict(unshare=272, keyctl=250, add_key=248, request_key=249,
                   io_uring_setup=425, perf_event_open=298, clone3=435, personality=135),
    "aarch64": dict(unshare=97, keyctl=219, add_key=217, request_key=218,
                    io_uring_setup=425, perf_event_open=241, clone3=435, personality=92),
}[platform.machine()]
def call(name, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(NR[name], *args)
    print(f"{name}={0 if rc >= 0 else ctypes.get_errno()}", flush=True)
CLONE_NEWUSER = 0x10000000
call("unshare", CLONE_NEWUSER)
KEY_SPEC_SESSION_KEYRING = ctypes.c_long(-3)
call("keyctl", 0, KEY_SPEC_SESSION_KEYRING, 0)
call("add_key", b"user", b"berth-probe", b"secret", 6, KEY_SPEC_SESSION_KEYRING)
call("request_key", b"user", b"berth-probe", None, 0)
params = ctypes.create_string_buffer(120)
call("io_uring_setup", 1, params)
attr = ctypes.create_string_buffer(128)
call("perf_event_open", attr, 0, -1, -1, 0)
call("clone3", None, 0)
call("personality", ctypes.c_ulong(0xffffffff))
ADDR_NO_RANDOMIZE = 0x0040000
call("personality", ADDR_NO_RANDOMIZE)
t = threading.Thread(target=lambda: None); t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print("thread+fork=ok", flush=True)
"#;

const PYTHON: &str = "/usr/bin/python3";

fn require_python(test: &str) -> bool {
    if std::path::Path::new(PYTHON).exists() {
        return true;
    }
    common::skip(test, "python3 is not installed");
    false
}

/// Runs the probe in a container and returns `name=errno` lines.
fn probe(agent: &Agent, id: &str, security_opt: Option<Value>) -> (Value, Vec<String>) {
    let mut request = json!({
        "id": id,
        "command": [
            "sh",
            "-c",
            format!("grep '^Seccomp:' /proc/self/status; echo a | cat; exec {PYTHON} -c \"$1\""),
            "sh",
            PROBE,
        ],
    });
    if let Some(opt) = security_opt {
        request["security_opt"] = opt;
    }
    agent.launch(request);
    let ended = agent.wait(id);
    let out = agent.stdout(id);
    assert_eq!(ended["exit_code"], 0, "{out}\n{}", agent.log());
    (
        agent.api("GET", &format!("/v1/containers/{id}"), None).body,
        out.lines().map(|l| l.replace('\t', " ")).collect(),
    )
}

#[test]
fn the_default_profile_denies_what_docker_denies_and_lets_the_rest_run() {
    require_root!();
    if !require_python("the_default_profile_denies_what_docker_denies") {
        return;
    }
    let agent = Agent::start();
    let (container, lines) = probe(&agent, "confined", None);
    assert_eq!(container["seccomp"], "default");
    let eperm = libc::EPERM.to_string();
    let expect = |name: &str, errno: &str| {
        assert!(
            lines.iter().any(|l| *l == format!("{name}={errno}")),
            "{name} should be {errno}: {lines:?}"
        );
    };
    assert!(lines.contains(&"Seccomp: 2".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"a".to_string()),
        "a pipeline runs: {lines:?}"
    );
    for name in [
        "unshare",
        "keyctl",
        "add_key",
        "request_key",
        "io_uring_setup",
        "perf_event_open",
    ] {
        expect(name, &eperm);
    }
    expect("clone3", &libc::ENOSYS.to_string());
    // The query is allowed, a persona change outside Docker's list is not.
    expect("personality", "0");
    expect("personality", &eperm);
    assert!(lines.contains(&"thread+fork=ok".to_string()), "{lines:?}");

    // The same probe unconfined: the errnos above are the filter's doing.
    let (container, lines) = probe(&agent, "unconfined", Some(json!({"seccomp": "unconfined"})));
    assert_eq!(container["seccomp"], "unconfined");
    assert!(lines.contains(&"Seccomp: 0".to_string()), "{lines:?}");
    assert!(
        !lines.contains(&format!("clone3={}", libc::ENOSYS)),
        "{lines:?}"
    );
    assert!(lines.contains(&"keyctl=0".to_string()), "{lines:?}");
}

/// The default profile is resolved per bounding set (Docker's lets
/// CAP_SYS_ADMIN unshare) and each set's filter is kept for the next
/// container of that set: one container's added capability never widens
/// another's filter (decision 0056).
#[test]
fn the_default_profile_follows_each_containers_capabilities() {
    require_root!();
    if !require_python("the_default_profile_follows_each_containers_capabilities") {
        return;
    }
    let agent = Agent::start();
    let unshare = |id: &str, capabilities: Option<Value>| -> String {
        let mut request = json!({"id": id, "command": [PYTHON, "-c", PROBE]});
        if let Some(capabilities) = capabilities {
            request["capabilities"] = capabilities;
        }
        agent.launch(request);
        let ended = agent.wait(id);
        let out = agent.stdout(id);
        assert_eq!(ended["exit_code"], 0, "{out}\n{}", agent.log());
        let line = out.lines().find(|l| l.starts_with("unshare="));
        line.unwrap_or_else(|| panic!("{id}: {out}")).to_string()
    };
    let eperm = format!("unshare={}", libc::EPERM);
    assert_eq!(unshare("plain", None), eperm);
    assert_eq!(
        unshare("admin", Some(json!({"add": ["SYS_ADMIN"]}))),
        "unshare=0"
    );
    assert_eq!(
        unshare("plain-again", None),
        eperm,
        "the admin's filter was reused"
    );
    assert_eq!(
        unshare("admin-again", Some(json!({"add": ["SYS_ADMIN"]}))),
        "unshare=0"
    );
}

#[test]
fn unshare_of_a_user_namespace_fails_with_eperm() {
    require_root!();
    let unshare = "/usr/bin/unshare";
    if !std::path::Path::new(unshare).exists() {
        common::skip(
            "unshare_of_a_user_namespace_fails",
            "util-linux unshare missing",
        );
        return;
    }
    let agent = Agent::start();
    let out = agent.berth(&[
        "run",
        "--",
        "sh",
        "-c",
        &format!("{unshare} -Ur true 2>&1 && echo escaped || echo refused"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Operation not permitted"), "{stdout}");
    assert!(stdout.ends_with("refused\n"), "{stdout}");
}

#[test]
fn a_profile_file_given_to_the_cli_is_enforced() {
    require_root!();
    let agent = Agent::start();
    let path = agent.dir.path().join("no-mkdir.json");
    // Docker's format, with a condition that holds (amd64 or arm64 hosts
    // have a bounding set with CAP_CHOWN).
    std::fs::write(
        &path,
        serde_json::to_vec(&json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                 "includes": {"caps": ["CAP_CHOWN"]}}
            ]
        }))
        .unwrap(),
    )
    .unwrap();
    let out = agent.berth(&[
        "run",
        "--name",
        "nomkdir",
        "--security-opt",
        &format!("seccomp={}", path.display()),
        "--",
        "sh",
        "-c",
        "mkdir /tmp/d 2>&1 || echo mkdir=refused; touch /tmp/f && echo touch=ok; grep '^Seccomp:' /proc/self/status",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Operation not permitted"), "{stdout}");
    assert!(stdout.contains("mkdir=refused"), "{stdout}");
    assert!(stdout.contains("touch=ok"), "{stdout}");
    assert!(stdout.contains("Seccomp:\t2"), "{stdout}");
    let container = agent.api("GET", "/v1/containers/nomkdir", None).body;
    assert_eq!(container["seccomp"], "custom");
    let inspect = agent.berth(&["inspect", "nomkdir"]);
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("\"seccomp\": \"custom\""));
}

/// The shim installs a filter before it waits for the agent's go only when
/// the filter lets that wait's syscalls through (decision 0044); one that
/// refuses `read`, `write` or `close` goes on last, right before the exec,
/// and the command runs under it (its `mkdir` is refused).
#[test]
fn a_profile_refusing_the_setups_own_syscalls_still_confines_the_command() {
    require_root!();
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    for (id, refused) in [
        ("nowrite", &["write", "writev"][..]),
        ("noread", &["read"][..]),
        ("noclose", &["close"][..]),
        ("allowing", &[][..]),
    ] {
        let mut names = vec!["mkdir", "mkdirat"];
        names.extend_from_slice(refused);
        agent.launch(json!({
            "id": id,
            "rootfs": rootfs,
            "command": ["sh", "-c", "mkdir /tmp/d 2>/dev/null || exit 4"],
            "security_opt": {"seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO"}]
            }}
        }));
        let ended = agent.wait(id);
        assert_eq!(ended["exit_code"], 4, "{id}: {ended}");
        assert_eq!(ended["reason"], "exited", "{id}: {ended}");
    }
}

#[test]
fn bad_profiles_get_400_naming_the_field_and_create_nothing() {
    require_root!();
    let agent = Agent::start();
    let allow = |syscalls: Value| json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls});
    let cases = [
        (json!("strict"), "security_opt.seccomp"),
        (
            json!({"defaultAction": "SCMP_ACT_MAYBE"}),
            "security_opt.seccomp.defaultAction",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"}),
            "listenerPath",
        ),
        (
            allow(json!([{"names": ["Bad!"], "action": "SCMP_ACT_ERRNO"}])),
            "security_opt.seccomp.syscalls[0].names[0]",
        ),
        (
            allow(json!([{"names": [], "action": "SCMP_ACT_ERRNO"}])),
            "security_opt.seccomp.syscalls[0].names",
        ),
        (
            allow(json!([{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}])),
            "security_opt.seccomp.syscalls[0].args[0].index",
        ),
        (
            allow(json!([{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}])),
            "security_opt.seccomp.syscalls[0].args[0].op",
        ),
        (
            allow(json!([{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "includes": {"caps": ["CAP_EVERYTHING"]}}])),
            "security_opt.seccomp.syscalls[0].includes.caps",
        ),
        (
            allow(json!([{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}])),
            "security_opt.seccomp.syscalls[0].action",
        ),
        (
            allow(json!([{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}])),
            "security_opt.seccomp.syscalls[0].errnoRet",
        ),
    ];
    for (seccomp, field) in cases {
        let request = json!({"command": ["true"], "security_opt": {"seccomp": seccomp}});
        let answer = agent.api("POST", "/v1/containers", Some(request.clone()));
        assert_eq!(answer.status, 400, "{request} → {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{request}: message {message:?} should name {field}"
        );
    }
    let unknown = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"command": ["true"], "security_opt": {"apparmor": "x"}})),
    );
    assert_eq!(unknown.status, 400);
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());

    // The CLI: a file that is not JSON, or missing, is a usage error.
    let path = agent.dir.path().join("broken.json");
    std::fs::write(&path, "{\"defaultAction\": ").unwrap();
    for value in [
        format!("seccomp={}", path.display()),
        "seccomp=/no/such/profile.json".to_string(),
        "seccomp=".to_string(),
    ] {
        let out = agent.berth(&["run", "--security-opt", &value, "--", "true"]);
        assert_eq!(out.status.code(), Some(2), "{value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--security-opt"), "{stderr}");
    }
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn the_agent_setting_chooses_the_default_and_a_bad_file_stops_the_agent() {
    require_root!();
    let agent = Agent::start_with_config("[security]\nseccomp = \"unconfined\"\n");
    let out = agent.berth(&[
        "run",
        "--name",
        "free",
        "--",
        "grep",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Seccomp:\t0\n");
    assert_eq!(
        agent.api("GET", "/v1/containers/free", None).body["seccomp"],
        "unconfined"
    );
    // The request still wins.
    let out = agent.berth(&[
        "run",
        "--security-opt",
        "seccomp=default",
        "--",
        "grep",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Seccomp:\t2\n");
    drop(agent);

    // A profile file from the config: mkdir denied for every container.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.json");
    std::fs::write(
        &path,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let agent =
        Agent::start_with_config(&format!("[security]\nseccomp = \"{}\"\n", path.display()));
    let out = agent.berth(&["run", "--", "sh", "-c", "mkdir /tmp/d || echo refused"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused"));
    drop(agent);

    std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["agent", "--cgroup-root", "berth-never"])
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--work-dir")
        .arg(dir.path().join("w"))
        .arg("--runtime-dir")
        .arg(dir.path().join("r"))
        .arg("--config")
        .arg({
            let config = dir.path().join("berth.toml");
            std::fs::write(
                &config,
                format!("[security]\nseccomp = \"{}\"\n", path.display()),
            )
            .unwrap();
            config
        })
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("security.seccomp"), "{stderr}");
    assert!(stderr.contains("defaultAction"), "{stderr}");
}
