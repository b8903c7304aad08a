//! `userns: auto`: container ids 0..65535 mapped to an unprivileged host
//! range of the container's own, for real.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{busybox_rootfs, eventually, Agent};
use serde_json::{json, Value};

const BLOCK: u64 = 65536;

/// Whether this kernel lets anyone create user namespaces; skips if not.
fn userns_available(test: &str) -> bool {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" || !Path::new("/proc/self/ns/user").exists() {
        common::skip_missing_kernel_feature(test, "the kernel allows no user namespaces");
        return false;
    }
    true
}

fn agent_with_range(uids: &str) -> Agent {
    Agent::start_with_config(&format!("[userns]\nsubordinate_uids = \"{uids}\"\n"))
}

/// Waits until the container's stdout has a line `ready`, returns stdout.
fn wait_ready(agent: &Agent, id: &str) -> String {
    eventually(Duration::from_secs(20), "the container to be ready", || {
        let out = agent.stdout(id);
        out.lines().any(|l| l == "ready").then_some(out)
    })
}

/// The `Uid:` line of /proc/PID/status: real, effective, saved, fs.
fn host_uids(pid: u64) -> Vec<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

fn map_of(pid: u64, which: &str) -> Vec<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{which}"))
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn sandbox(container: &Value) -> PathBuf {
    PathBuf::from(container["sandbox"].as_str().unwrap())
}

#[test]
fn container_root_is_an_unprivileged_host_user_that_owns_its_sandbox() {
    require_root!();
    if !userns_available("userns::container_root_is_unprivileged") {
        return;
    }
    let start = 1_000_000u64;
    let agent = agent_with_range(&format!("{start}:{}", 2 * BLOCK));
    let c = agent.launch(json!({
        "id": "ns-root",
        "userns": "auto",
        "command": ["sh", "-c",
            "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
             echo made > \"$BERTH_SANDBOX/made\" && \
             cp /bin/sh \"$BERTH_SANDBOX/rootsh\" && chmod 4755 \"$BERTH_SANDBOX/rootsh\" && \
             echo ready; exec sleep 600"],
    }));
    assert_eq!(
        c["userns"],
        json!({"uid": start, "gid": start, "size": BLOCK})
    );
    let out = wait_ready(&agent, "ns-root");
    let words: Vec<&str> = out.split_whitespace().collect();
    // Inside: root, with 0..65535 mapped to the range.
    assert_eq!(
        &words[..8],
        &[
            "0",
            "0",
            "0",
            &start.to_string(),
            "65536",
            "0",
            &start.to_string(),
            "65536"
        ],
        "{out}"
    );
    // Outside: an ordinary host user.
    let pid = c["pid"].as_u64().unwrap();
    assert_eq!(host_uids(pid), [start; 4]);
    assert_eq!(map_of(pid, "uid_map"), [0, start, BLOCK]);
    let dir = sandbox(&c);
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (start as u32, start as u32));
    let made = std::fs::metadata(dir.join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (start as u32, start as u32));
    // The setuid file it made is setuid to its own unprivileged uid, not to
    // host root.
    let rootsh = std::fs::metadata(dir.join("rootsh")).unwrap();
    assert_eq!(rootsh.mode() & 0o4000, 0o4000);
    assert_eq!(rootsh.uid(), start as u32);

    // A container user is start + its uid on the host, sandbox included.
    let u = agent.launch(json!({
        "id": "ns-user",
        "userns": "auto",
        "user": {"uid": 1000, "gid": 1000},
        "command": ["sh", "-c",
            "id -u; echo made > \"$BERTH_SANDBOX/made\" && echo ready; exec sleep 600"],
    }));
    let second = start + BLOCK;
    assert_eq!(u["userns"]["uid"], second);
    let out = wait_ready(&agent, "ns-user");
    assert!(out.starts_with("1000\n"), "{out}");
    assert_eq!(host_uids(u["pid"].as_u64().unwrap()), [second + 1000; 4]);
    let dir = sandbox(&u);
    assert_eq!(
        std::fs::metadata(&dir).unwrap().uid(),
        (second + 1000) as u32
    );
    assert_eq!(
        std::fs::metadata(dir.join("made")).unwrap().uid(),
        (second + 1000) as u32
    );
    for id in ["ns-root", "ns-user"] {
        let a = agent.api("DELETE", &format!("/v1/containers/{id}?force=true"), None);
        assert_eq!(a.status, 204, "{:?}", a.body);
    }
    assert!(!dir.exists(), "nothing remains after rm");
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn root_of_a_userns_container_cannot_read_a_host_root_only_file() {
    require_root!();
    if !userns_available("userns::root_cannot_read") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    // Reachable by the container's root, an unprivileged host user.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let secret = rootfs.join("secret");
    std::fs::write(&secret, "host root only\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let agent = agent_with_range(&format!("2000000:{BLOCK}"));
    let attack = |userns: Option<&str>, id: &str| {
        let mut request = json!({
            "id": id,
            "rootfs": rootfs,
            "command": ["sh", "-c", "cat /secret 2>&1; echo rc=$?"],
        });
        if let Some(mode) = userns {
            request["userns"] = mode.into();
        }
        agent.launch(request);
        agent.wait(id);
        agent.stdout(id)
    };
    // Host root mode of the same container reads it (the control)...
    assert_eq!(attack(None, "plain"), "host root only\nrc=0\n");
    // ...the container's root in a user namespace does not.
    let out = attack(Some("auto"), "mapped");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.ends_with("rc=1\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "host root only\n"
    );
}

#[test]
fn ranges_are_disjoint_survive_an_agent_restart_and_are_freed_by_rm() {
    require_root!();
    if !userns_available("userns::ranges_survive_restart") {
        return;
    }
    let start = 3_000_000u64;
    let mut agent = agent_with_range(&format!("{start}:{}", 3 * BLOCK));
    let launch = |agent: &Agent, id: &str| {
        agent.launch(json!({"id": id, "userns": "auto", "command": ["sleep", "600"]}))
    };
    let a = launch(&agent, "a");
    let b = launch(&agent, "b");
    let (a_uid, b_uid) = (
        a["userns"]["uid"].as_u64().unwrap(),
        b["userns"]["uid"].as_u64().unwrap(),
    );
    assert_ne!(a_uid, b_uid);
    for (c, uid) in [(&a, a_uid), (&b, b_uid)] {
        assert_eq!(
            map_of(c["pid"].as_u64().unwrap(), "uid_map"),
            [0, uid, BLOCK]
        );
        assert_eq!(
            map_of(c["pid"].as_u64().unwrap(), "gid_map"),
            [0, uid, BLOCK]
        );
    }

    agent.kill_agent();
    agent.start_again();
    let c = launch(&agent, "c");
    let c_uid = c["userns"]["uid"].as_u64().unwrap();
    assert!(![a_uid, b_uid].contains(&c_uid), "{c_uid} reused");
    for (id, pid) in [("a", &a["pid"]), ("b", &b["pid"])] {
        let now = agent.api("GET", &format!("/v1/containers/{id}"), None).body;
        assert_eq!(now["state"], "running", "{id}");
        assert_eq!(&now["pid"], pid);
    }

    let full = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({"id": "d", "userns": "auto", "command": ["true"]})),
    );
    assert_eq!(full.status, 409, "{:?}", full.body);
    let message = full.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("user namespace"), "{message}");
    assert!(agent.api("GET", "/v1/containers/d", None).status == 404);

    let sandbox_a = sandbox(&a);
    let rm = agent.api("DELETE", "/v1/containers/a?force=true", None);
    assert_eq!(rm.status, 204, "{:?}", rm.body);
    assert!(!sandbox_a.exists());
    let d = launch(&agent, "d");
    assert_eq!(d["userns"]["uid"], a_uid, "a's range is free again");
}

#[test]
fn userns_without_a_range_or_with_a_bad_value_is_400_naming_it() {
    require_root!();
    let agent = Agent::start();
    for (request, field) in [
        (json!({"userns": "auto", "command": ["true"]}), "userns"),
        (json!({"userns": "keep-id", "command": ["true"]}), "userns"),
    ] {
        let answer = agent.api("POST", "/v1/containers", Some(request.clone()));
        assert_eq!(answer.status, 400, "{request}: {:?}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    let configured = agent_with_range(&format!("4000000:{BLOCK}"));
    // A rootfs the container's root could not reach.
    let hidden = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(hidden.path());
    std::fs::set_permissions(
        hidden.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let answer = configured.api(
        "POST",
        "/v1/containers",
        Some(json!({"userns": "auto", "rootfs": rootfs, "command": ["true"]})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("rootfs") && message.contains("searchable"),
        "{message}"
    );
    let answer = configured.api(
        "POST",
        "/v1/containers",
        Some(json!({"userns": "auto", "user": {"uid": 70000}, "command": ["true"]})),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("user"), "{message}");
    assert!(agent.leftovers().is_empty() && configured.leftovers().is_empty());
}

#[test]
fn without_userns_nothing_changes() {
    require_root!();
    let range = format!("5000000:{BLOCK}");
    let agent = Agent::start_with(&["--userns-range", &range]);
    let out = agent.berth(&["run", "--name", "plain", "--", "cat", "/proc/self/uid_map"]);
    assert!(out.status.success(), "{out:?}");
    let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(words, ["0", "0", "4294967295"]);
    let c = agent.api("GET", "/v1/containers/plain", None).body;
    assert!(c.get("userns").is_none(), "{c}");
    assert_eq!(std::fs::metadata(sandbox(&c)).unwrap().uid(), 0);
    // And the CLI flag reaches the agent.
    let out = agent.berth(&["run", "--userns", "auto", "--", "cat", "/proc/self/uid_map"]);
    assert!(out.status.success(), "{out:?}");
    let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(words, ["0", "5000000", "65536"]);
}

#[test]
fn a_live_containers_range_stays_held_when_its_records_are_unreadable() {
    require_root!();
    if !userns_available("userns::unreadable_record") {
        return;
    }
    let start = 6_000_000u64;
    let mut agent = agent_with_range(&format!("{start}:{}", 2 * BLOCK));
    let a = agent.launch(json!({"id": "a", "userns": "auto", "command": ["sleep", "600"]}));
    assert_eq!(a["userns"]["uid"], start);
    let pid = a["pid"].as_u64().unwrap();
    agent.kill_agent();
    for record in [
        agent.runtime_dir.join("containers/a/container.json"),
        agent.work_dir.join("records/a.json"),
    ] {
        std::fs::write(&record, "{\"id\": \"a\", \"sta").unwrap();
    }
    agent.start_again();
    // The record is gone for the agent, but its sandbox, owned by the
    // range, still says whose ids these are.
    let b = agent.launch(json!({"id": "b", "userns": "auto", "command": ["true"]}));
    assert_eq!(
        b["userns"]["uid"],
        start + BLOCK,
        "a's range was handed out"
    );
    // Whether a record-less container is left running is recovery's
    // business; if it is, end it (it is still ours: its map says so).
    let still_ours = std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
        .is_ok_and(|m| m.split_whitespace().nth(1) == Some(&start.to_string()));
    if still_ours {
        // SAFETY: kill(2) on the container this test launched.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let _ = std::fs::remove_dir_all(agent.work_dir.join("containers/a"));
}

#[test]
fn runc_runs_a_userns_bundle_the_same() {
    require_root!();
    if !userns_available("userns::runc_interop") {
        return;
    }
    let Some(runc) = common::runc("userns::runc_runs_a_userns_bundle_the_same") else {
        return;
    };
    let start = 7_000_000u64;
    let agent = agent_with_range(&format!("{start}:{BLOCK}"));
    let rootfs = busybox_rootfs(agent.dir.path());
    let script = "id -u; cat /proc/self/uid_map; ls /sys/kernel >/dev/null && echo sys=ok; \
                  echo x > /sandbox/w && echo sandbox=rw; touch /probe 2>/dev/null || echo root=ro";
    let c = agent.launch(json!({
        "id": "interop",
        "userns": "auto",
        "rootfs": rootfs,
        "command": ["/bin/sh", "-c", script],
    }));
    agent.wait("interop");
    let ours = agent.stdout("interop");
    assert!(ours.contains("sys=ok\nsandbox=rw\nroot=ro"), "{ours}");
    agent.wait_cgroups_gone("interop");
    common::assert_runc_runs_the_same(runc, c["bundle"].as_str().unwrap(), "userns-interop", &ours);
}

#[test]
fn the_sandbox_is_mounted_even_where_the_containers_root_cannot_reach_its_host_path() {
    require_root!();
    if !userns_available("userns::unreachable_sandbox_path") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let agent = agent_with_range(&format!("9000000:{BLOCK}"));
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // No other host user (and the container's root is one) may pass here.
    let containers = agent.work_dir.join("containers");
    std::fs::set_permissions(&containers, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (id, rootfs) in [("host-root", None), ("own-rootfs", Some(&rootfs))] {
        let mut request = json!({
            "id": id,
            "userns": "auto",
            "command": ["sh", "-c", "echo x > \"$BERTH_SANDBOX/w\" && echo written"],
        });
        if let Some(rootfs) = rootfs {
            request["rootfs"] = json!(rootfs);
        }
        let c = agent.launch(request);
        let end = agent.wait(id);
        assert_eq!(end["exit_code"], 0, "{end}");
        assert_eq!(agent.stdout(id), "written\n");
        assert_eq!(
            std::fs::metadata(sandbox(&c).join("w")).unwrap().uid(),
            9_000_000
        );
        let rm = agent.api("DELETE", &format!("/v1/containers/{id}"), None);
        assert_eq!(rm.status, 204);
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct NetNs(String);

impl NetNs {
    fn add(name: String) -> NetNs {
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        NetNs(name)
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
fn a_userns_container_joins_a_network_namespace_by_path() {
    require_root!();
    if !userns_available("userns::joins_netns") {
        return;
    }
    let netns = NetNs::add(format!("berth-userns-{}", std::process::id()));
    let inode = std::fs::metadata(netns.path()).unwrap().ino();
    let agent = agent_with_range(&format!("10000000:{BLOCK}"));
    agent.launch(json!({
        "id": "joined",
        "userns": "auto",
        "network": format!("ns:{}", netns.path().display()),
        "command": ["sh", "-c", "id -u; stat -L -c %i /proc/self/ns/net"],
    }));
    assert_eq!(agent.wait("joined")["exit_code"], 0);
    assert_eq!(agent.stdout("joined"), format!("0\n{inode}\n"));
}

#[test]
fn a_loop_mounted_sandbox_belongs_to_the_containers_root_too() {
    require_root!();
    if !userns_available("userns::loop_sandbox") {
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        common::skip("userns::loop_sandbox", "no loop devices on this host");
        return;
    }
    let agent = Agent::start_with_config(&format!(
        "[disk]\nbackend = \"loop\"\n[userns]\nsubordinate_uids = \"11000000:{BLOCK}\"\n"
    ));
    let c = agent.launch(json!({
        "id": "looped",
        "userns": "auto",
        "command": ["sh", "-c", "echo x > \"$BERTH_SANDBOX/w\" && echo written; exec sleep 600"],
        "resources": {"disk": 16u64 << 20},
    }));
    eventually(Duration::from_secs(20), "the write", || {
        agent.stdout("looped").contains("written").then_some(())
    });
    let dir = sandbox(&c);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo.contains(&format!(" {} ", dir.display())),
        "the sandbox is not a loop mount"
    );
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), 11_000_000);
    assert_eq!(std::fs::metadata(dir.join("w")).unwrap().uid(), 11_000_000);
    let rm = agent.api("DELETE", "/v1/containers/looped?force=true", None);
    assert_eq!(rm.status, 204, "{:?}", rm.body);
    assert!(!dir.exists());
}

/// The default device nodes: made with mknod outside a user namespace (a
/// copy of the host node, no mount), bind mounts of the host's nodes inside
/// one, where mknod is refused. Either way they are the host's devices,
/// with the host's mode, and work.
#[test]
fn default_devices_are_nodes_outside_a_user_namespace_and_binds_inside() {
    require_root!();
    if !userns_available("userns::default_devices_are_nodes_outside_and_binds_inside") {
        return;
    }
    let agent = agent_with_range(&format!("{}:{}", 3_000_000u64, 2 * BLOCK));
    let rootfs = busybox_rootfs(agent.dir.path());
    let script = "for d in null zero full random urandom tty; do \
                  stat -c \"$d %t:%T %a %F\" /dev/$d; done; \
                  grep -c ' /dev/\\(null\\|zero\\|full\\|random\\|urandom\\|tty\\) ' /proc/self/mountinfo; \
                  echo x > /dev/null && head -c 3 /dev/zero | wc -c";
    let expected: String = ["null", "zero", "full", "random", "urandom", "tty"]
        .iter()
        .map(|d| {
            let host = std::fs::metadata(format!("/dev/{d}")).unwrap();
            let rdev = host.rdev();
            format!(
                "{d} {:x}:{:x} {:o} character special file\n",
                libc::major(rdev),
                libc::minor(rdev),
                host.mode() & 0o777
            )
        })
        .collect();
    for (id, userns, mounts) in [("plain", "host", "0"), ("mapped", "auto", "6")] {
        agent.launch(json!({
            "id": id, "rootfs": rootfs, "userns": userns,
            "command": ["sh", "-c", script],
        }));
        let ended = agent.wait(id);
        assert_eq!(ended["exit_code"], 0, "{id}: {ended} {}", agent.stdout(id));
        assert_eq!(agent.stdout(id), format!("{expected}{mounts}\n3\n"), "{id}");
    }
}
