//! `exec` (issue 12 item 1): a further process in a running container joins
//! all of its namespaces and cgroups and takes the same confinement as its
//! first process; attack tests for what it must not get from the host.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{busybox_rootfs, eventually, Agent};
use serde_json::{json, Value};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn exec(agent: &Agent, id: &str, command: &[&str]) -> Value {
    let answer = agent.api(
        "POST",
        &format!("/v1/containers/{id}/exec"),
        Some(json!({ "command": command })),
    );
    assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, agent.log());
    answer.body
}

/// The fields of a /proc status file that describe confinement.
fn confinement(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| {
            [
                "CapInh:",
                "CapPrm:",
                "CapEff:",
                "CapBnd:",
                "CapAmb:",
                "NoNewPrivs:",
                "Seccomp:",
                "Uid:",
                "Gid:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect()
}

fn mount_points(mountinfo: &str) -> BTreeSet<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

#[test]
fn exec_joins_the_container_and_is_confined_like_it() {
    require_root!();
    let agent = Agent::start();
    let container = agent.launch(json!({"id": "box", "network": "none",
        "command": ["sleep", "1000"]}));
    let pid = container["pid"].as_u64().unwrap();

    // Its pid 1, hostname, namespaces.
    let out = exec(&agent, "box", &["cat", "/proc/1/cmdline"]);
    assert_eq!(out["stdout"], "sleep\u{0}1000\u{0}", "{out}");
    assert_eq!(out["exit_code"], 0);
    assert_eq!(exec(&agent, "box", &["hostname"])["stdout"], "box\n");
    for ns in ["mnt", "pid", "net", "uts", "ipc", "user", "cgroup"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let out = exec(&agent, "box", &["readlink", &format!("/proc/self/ns/{ns}")]);
        assert_eq!(
            out["stdout"].as_str().unwrap().trim(),
            theirs.to_str().unwrap(),
            "{ns}"
        );
    }
    // Mounts.
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let ours = exec(&agent, "box", &["cat", "/proc/self/mountinfo"]);
    assert_eq!(
        mount_points(ours["stdout"].as_str().unwrap()),
        mount_points(&theirs)
    );
    // Cgroups: the very same, so its limits apply to the exec'd process.
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let ours = exec(&agent, "box", &["cat", "/proc/self/cgroup"]);
    assert_eq!(ours["stdout"], theirs);
    // Capabilities, no_new_privs, seccomp (2: a filter), user.
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ours = exec(&agent, "box", &["cat", "/proc/self/status"]);
    let ours = confinement(ours["stdout"].as_str().unwrap());
    assert_eq!(ours, confinement(&theirs));
    assert!(ours.contains(&"Seccomp:\t2".to_string()), "{ours:?}");
    assert!(ours.contains(&"NoNewPrivs:\t1".to_string()), "{ours:?}");

    // Its code, output and environment.
    let out = agent.api(
        "POST",
        "/v1/containers/box/exec",
        Some(
            json!({"command": ["sh", "-c", "echo $GREETING; pwd; echo oops >&2; exit 42"],
            "env": {"GREETING": "hello"}, "workdir": "/tmp"}),
        ),
    );
    assert_eq!(out.status, 200);
    assert_eq!(out.body["exit_code"], 42);
    assert_eq!(out.body["stdout"], "hello\n/tmp\n");
    assert_eq!(out.body["stderr"], "oops\n");
    // A user of its own.
    let out = agent.api(
        "POST",
        "/v1/containers/box/exec",
        Some(json!({"command": ["id", "-u"], "user": {"uid": 1234}})),
    );
    assert_eq!(out.body["stdout"], "1234\n");

    // The CLI.
    let out = agent.berth(&[
        "exec",
        "-e",
        "X=1",
        "box",
        "sh",
        "-c",
        "echo $X; echo e >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n");
    assert_eq!(text(&out.stderr), "e\n");
    let out = agent.berth(&["exec", "box", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no-such-command"));
    let out = agent.berth(&["exec", "-w", "/no/such/dir", "box", "true"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));

    // Bad input and a stopped container.
    let answer = agent.api(
        "POST",
        "/v1/containers/box/exec",
        Some(json!({"command": []})),
    );
    assert_eq!(answer.status, 400);
    assert!(answer.body.to_string().contains("command"));
    let answer = agent.api(
        "POST",
        "/v1/containers/box/exec",
        Some(json!({"command": ["true"], "workdir": "tmp"})),
    );
    assert_eq!(answer.status, 400);
    assert_eq!(
        agent
            .api(
                "POST",
                "/v1/containers/nope/exec",
                Some(json!({"command": ["true"]}))
            )
            .status,
        404
    );
    agent.berth(&["stop", "-t", "0", "box"]);
    let answer = agent.api(
        "POST",
        "/v1/containers/box/exec",
        Some(json!({"command": ["true"]})),
    );
    assert_eq!(answer.status, 409, "{:?}", answer.body);
}

#[test]
fn exec_gets_nothing_of_the_host() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "jail", "command": ["sleep", "1000"]}));

    // Only stdin, stdout and stderr: no fd of the agent or the helper
    // (besides them, ls sees only the directory it reads).
    let out = exec(&agent, "jail", &["ls", "-l", "/proc/self/fd/"]);
    let fds: Vec<(String, String)> = out["stdout"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(left, target)| {
            let fd = left.split_whitespace().last().unwrap().to_string();
            (fd, target.to_string())
        })
        .collect();
    let names: Vec<&str> = fds.iter().map(|(fd, _)| fd.as_str()).collect();
    assert_eq!(names, ["0", "1", "2", "3"], "{out}");
    assert!(
        fds[3].1.starts_with("/proc/") && fds[3].1.ends_with("/fd"),
        "{out}"
    );
    // stdin is the container's /dev/null, the others are pipes.
    let out = exec(
        &agent,
        "jail",
        &["sh", "-c", "readlink /proc/$$/fd/0 /proc/$$/fd/1"],
    );
    let links = out["stdout"].as_str().unwrap();
    assert!(links.starts_with("/dev/null\npipe:"), "{links}");

    // The helper that started it is outside the container's pid namespace:
    // nothing inside can name it, let alone ptrace it.
    let out = exec(&agent, "jail", &["sh", "-c", "grep PPid /proc/$$/status"]);
    assert_eq!(out["stdout"], "PPid:\t0\n", "{out}");
    let out = exec(
        &agent,
        "jail",
        &[
            "sh",
            "-c",
            "for p in /proc/[0-9]*; do cat $p/comm 2>/dev/null; done",
        ],
    );
    // sleep (pid 1), the shell and its cat of the moment: no helper.
    for comm in out["stdout"].as_str().unwrap().lines() {
        assert!(["sleep", "sh", "cat"].contains(&comm), "{out}");
    }
}

#[test]
fn exec_works_after_the_agent_restarts() {
    require_root!();
    let mut agent = Agent::start();
    agent.launch(json!({"id": "lasting", "command": ["sleep", "1000"]}));
    agent.kill_agent();
    agent.start_again();
    eventually(Duration::from_secs(20), "the container recovered", || {
        let answer = agent.api("GET", "/v1/containers/lasting", None);
        (answer.body["state"] == "running").then_some(())
    });
    let out = exec(&agent, "lasting", &["sh", "-c", "exit 5"]);
    assert_eq!(out["exit_code"], 5);
    let out = exec(&agent, "lasting", &["cat", "/proc/1/cmdline"]);
    assert_eq!(out["stdout"], "sleep\u{0}1000\u{0}");
}

#[test]
fn exec_enters_a_user_namespace_and_a_rootfs_of_its_own() {
    require_root!();
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        common::skip_missing_kernel_feature(
            "exec_enters_a_user_namespace_and_a_rootfs_of_its_own",
            "the kernel allows no user namespaces",
        );
        return;
    }
    let agent = Agent::start_with_config("[userns]\nsubordinate_uids = \"13000000:65536\"\n");
    let rootfs = busybox_rootfs(agent.dir.path());
    std::fs::write(rootfs.join("etc/marker"), "busybox root\n").unwrap();
    let container = agent.launch(json!({"id": "mapped", "userns": "auto",
        "rootfs": rootfs, "command": ["sleep", "1000"]}));
    let pid = container["pid"].as_u64().unwrap();
    // The container's root, not the host's.
    assert_eq!(
        exec(&agent, "mapped", &["cat", "/etc/marker"])["stdout"],
        "busybox root\n"
    );
    // Root inside, an unprivileged host user outside, like its pid 1 (ids
    // in status are shown as the reader's user namespace maps them).
    let out = exec(&agent, "mapped", &["cat", "/proc/self/status"]);
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let no_ids = |s: &str| {
        let mut c = confinement(s);
        c.retain(|l| !l.starts_with("Uid:") && !l.starts_with("Gid:"));
        c
    };
    let ours = out["stdout"].as_str().unwrap();
    assert_eq!(no_ids(ours), no_ids(&theirs));
    assert!(ours.contains("Uid:\t0\t0\t0\t0"), "{ours}");
    assert!(theirs.contains("Uid:\t13000000\t"), "{theirs}");
    let out = exec(&agent, "mapped", &["cat", "/proc/self/uid_map"]);
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(out["stdout"], theirs);
    assert!(!theirs.trim_start().starts_with("0          0"), "{theirs}");
}

/// Attack: an exec's output is the container's to choose, and its exec dir
/// lives in the agent's runtime dir (a tmpfs: host memory). A command that
/// writes 40 MiB to each stream leaves at most the cap of each on disk and
/// in the answer, and still ends with its own exit code.
#[test]
fn an_exec_flooding_its_output_fills_no_host_memory() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "flood", "network": "none",
        "command": ["sleep", "1000"]}));
    let cap: u64 = 4 << 20;
    let out = exec(
        &agent,
        "flood",
        &[
            "sh",
            "-c",
            "head -c 41943040 /dev/zero; head -c 41943040 /dev/zero >&2; exit 7",
        ],
    );
    assert_eq!(out["exit_code"], 7, "{}", agent.log());
    assert!(out["stdout"].as_str().unwrap().len() as u64 <= cap);
    assert!(out["stderr"].as_str().unwrap().len() as u64 <= cap);
    let execs = agent.runtime_dir.join("containers/flood/exec");
    let mut files = 0;
    let dirs = std::fs::read_dir(&execs).unwrap().flatten();
    for dir in dirs.filter(|d| d.path().is_dir()) {
        for name in ["stdout", "stderr"] {
            let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(size <= cap + 64, "{name}: {size} bytes kept");
            assert!(size >= cap, "{name}: only {size} bytes kept");
            files += 1;
        }
    }
    assert_eq!(files, 2);
}

/// A container exec'd into again and again keeps only its newest 16
/// finished execs on the runtime tmpfs; an exec created for attaching and
/// not yet run stays.
#[test]
fn finished_execs_are_pruned_to_the_newest() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "busy", "network": "none",
        "command": ["sleep", "1000"]}));
    let waiting = agent.api(
        "POST",
        "/v1/containers/busy/exec",
        Some(json!({"command": ["cat"], "stdin": true})),
    );
    assert_eq!(waiting.status, 201, "{:?}", waiting.body);
    let waiting = waiting.body["id"].as_str().unwrap().to_string();
    let ids: Vec<String> = (0..20)
        .map(|_| {
            exec(&agent, "busy", &["true"])["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let execs = agent.runtime_dir.join("containers/busy/exec");
    let kept: BTreeSet<String> = std::fs::read_dir(&execs)
        .unwrap()
        .flatten()
        .filter(|d| d.path().is_dir())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    let newest: BTreeSet<String> = ids[4..].iter().cloned().collect();
    assert!(kept.contains(&waiting), "{kept:?}");
    assert_eq!(kept.len(), 17, "{kept:?}");
    assert!(newest.is_subset(&kept), "{kept:?}");
}
