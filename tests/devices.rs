//! The devices isolator with real containers: only Docker's default allow
//! list and the nodes passed through with `--device` can be opened.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use common::{busybox_rootfs, eventually, Agent};
use serde_json::json;

/// Docker's default allow list as the kernel lists it in `devices.list`.
const DEFAULT_LIST: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

fn stream(agent: &Agent, id: &str, stream: &str) -> String {
    let answer = agent.api(
        "GET",
        &format!("/v1/containers/{id}/logs?stream={stream}"),
        None,
    );
    assert_eq!(answer.status, 200);
    String::from_utf8_lossy(&answer.raw).into_owned()
}

/// `mknod path c major minor`, as the host's root.
fn mknod(path: &Path, major: u32, minor: u32) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a nul-terminated path; creates a file, nothing else.
    let rc = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn devices_list(agent: &Agent, id: &str) -> Vec<String> {
    let path = agent.cgroup_dir("devices", Some(id)).join("devices.list");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_container_cgroup_allows_exactly_dockers_default_list() {
    require_root!();
    let agent = Agent::start();
    agent.launch(json!({"id": "listed", "command": ["sleep", "300"]}));
    assert_eq!(devices_list(&agent, "listed"), DEFAULT_LIST);
    let container = agent.api("GET", "/v1/containers/listed", None).body;
    let bundle = Path::new(container["bundle"].as_str().unwrap()).join("config.json");
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}));
    assert_eq!(rules.len(), DEFAULT_LIST.len() + 1);

    // The cgroup goes with the container.
    let dir = agent.cgroup_dir("devices", Some("listed"));
    assert_eq!(
        agent
            .api("DELETE", "/v1/containers/listed?force=true", None)
            .status,
        204
    );
    eventually(Duration::from_secs(10), "the devices cgroup to go", || {
        (!dir.exists()).then_some(())
    });
}

#[test]
fn a_device_node_shipped_in_a_rootfs_cannot_be_opened() {
    require_root!();
    if !Path::new("/dev/kvm")
        .metadata()
        .is_ok_and(|m| m.file_type().is_char_device())
    {
        common::skip(
            "a_device_node_shipped_in_a_rootfs_cannot_be_opened",
            "no /dev/kvm on this host",
        );
        return;
    }
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    // Outside /dev, which the container gets as a fresh tmpfs.
    mknod(&rootfs.join("kvm"), 10, 232);
    let script = "(exec 3</kvm) && echo OPENED || echo REFUSED";

    // Without the devices isolator the node opens (unless the rootfs is
    // mounted nodev, which refuses it with EACCES instead).
    agent.launch(json!({"id": "open", "command": ["sh", "-c", script], "rootfs": rootfs, "isolation": ["pids"]}));
    agent.wait("open");
    let (out, err) = (
        stream(&agent, "open", "stdout"),
        stream(&agent, "open", "stderr"),
    );
    eprintln!("without the devices isolator: {out:?} {err:?}");
    assert!(
        out == "OPENED\n" || err.contains("Permission denied"),
        "without the isolator: {out:?} {err:?}"
    );

    agent.launch(json!({"id": "fenced", "command": ["sh", "-c", script], "rootfs": rootfs}));
    agent.wait("fenced");
    let (out, err) = (
        stream(&agent, "fenced", "stdout"),
        stream(&agent, "fenced", "stderr"),
    );
    assert_eq!(out, "REFUSED\n", "{err}");
    assert!(
        err.contains("Operation not permitted") || err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn a_passed_device_opens_as_allowed_and_no_further() {
    require_root!();
    if !Path::new("/dev/loop-control").exists() {
        common::skip(
            "a_passed_device_opens_as_allowed_and_no_further",
            "no /dev/loop-control on this host",
        );
        return;
    }
    let agent = Agent::start();
    let rootfs = busybox_rootfs(agent.dir.path());
    let script = "ls -l /dev/lc; (exec 3</dev/lc) && echo READ=ok || echo READ=refused; \
                  (exec 3<>/dev/lc) && echo RW=ok || echo RW=refused; \
                  (exec 3</dev/null) && echo NULL=ok; sleep 300";
    let out = agent.berth(&[
        "run",
        "-d",
        "--name",
        "passed",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "--device",
        "/dev/loop-control:/dev/lc:r",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = eventually(Duration::from_secs(10), "the probes", || {
        let out = stream(&agent, "passed", "stdout");
        out.contains("NULL=ok").then_some(out)
    });
    // The node was made by the shim in the container's /dev tmpfs with the
    // host node's numbers and mode; the cgroup lets it be read, not written.
    let host_mode = {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata("/dev/loop-control")
            .unwrap()
            .permissions()
            .mode();
        let bits: String = (0..9)
            .map(|i| match (mode >> (8 - i)) & 1 {
                0 => '-',
                _ => ['r', 'w', 'x'][i % 3],
            })
            .collect();
        format!("c{bits}")
    };
    assert!(out.starts_with(&host_mode), "{host_mode}: {out}");
    assert!(out.contains("10, 237"), "{out}");
    assert!(out.contains("READ=ok"), "{out}");
    assert!(out.contains("RW=refused"), "{out}");
    let err = stream(&agent, "passed", "stderr");
    assert!(err.contains("Operation not permitted"), "{err}");
    let mut expected: Vec<String> = DEFAULT_LIST.iter().map(|s| s.to_string()).collect();
    expected.push("c 10:237 r".into());
    assert_eq!(devices_list(&agent, "passed"), expected);

    // Devices cannot change while the container runs.
    let patch = agent.api(
        "PATCH",
        "/v1/containers/passed/resources",
        Some(json!({"devices": [{"host": "/dev/null"}]})),
    );
    assert_eq!(patch.status, 400, "{:?}", patch.body);
    assert!(patch.body.to_string().contains("resources.devices"));
}

/// The devices isolator prepares on the launch's helper thread while the
/// shim starts the container (decision 0046). When the kernel refuses its
/// rules there (the agent's own cgroup denies the device), the launch still
/// fails with the kernel's reason and leaves nothing: no container process,
/// cgroup, directory or record.
#[test]
fn a_device_the_agents_cgroup_denies_fails_the_launch_and_leaves_nothing() {
    require_root!();
    let name = "a_device_the_agents_cgroup_denies_fails_the_launch_and_leaves_nothing";
    if !Path::new("/dev/loop-control").exists() {
        common::skip(name, "no /dev/loop-control on this host");
        return;
    }
    let agent = Agent::start();
    if agent.cgroup_layout().mode() != berth_cgroups::CgroupMode::V1 {
        common::skip(name, "the devices cgroup's deny file is v1's");
        return;
    }
    let root = agent.cgroup_dir("devices", None);
    std::fs::write(root.join("devices.deny"), "c 10:237 rwm").unwrap();
    let rootfs = busybox_rootfs(agent.dir.path());
    let answer = agent.api(
        "POST",
        "/v1/containers",
        Some(json!({
            "id": "denied",
            "command": ["sleep", "3131"],
            "rootfs": rootfs,
            "resources": {"devices": [{"host": "/dev/loop-control", "access": "r"}]},
        })),
    );
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("devices.allow") && message.contains("not permitted"),
        "{message}"
    );
    assert_eq!(agent.api("GET", "/v1/containers/denied", None).status, 404);
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
    // The container's process was started and waited for the go: it is
    // gone with the failed launch.
    let sleeping = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|cmdline| cmdline == b"sleep\x003131\0")
    };
    eventually(Duration::from_secs(10), "no container process", || {
        (!sleeping()).then_some(())
    });
}

#[test]
fn a_bad_device_is_a_400_naming_the_field_and_creates_nothing() {
    require_root!();
    let agent = Agent::start();
    let plain = agent.dir.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    for (device, field) in [
        (json!({"host": plain}), "resources.devices[0].host"),
        (
            json!({"host": "/dev/does-not-exist"}),
            "resources.devices[0].host",
        ),
        (
            json!({"host": "/dev/null", "container": "/dev/n", "access": "rwx"}),
            "resources.devices[0].access",
        ),
        (
            json!({"host": "/dev/null", "container": "/etc/null"}),
            "resources.devices[0].container",
        ),
        (
            json!({"host": "/dev/zero", "container": "/dev/null"}),
            "resources.devices[0].container",
        ),
    ] {
        let answer = agent.api(
            "POST",
            "/v1/containers",
            Some(json!({"command": ["true"], "resources": {"devices": [device]}})),
        );
        assert_eq!(answer.status, 400, "{device}: {:?}", answer.body);
        assert!(
            answer.body.to_string().contains(field),
            "{device}: {:?}",
            answer.body
        );
    }
    let out = agent.berth(&["run", "--device", "/etc/passwd", "--", "true"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("resources.devices[0].host"), "{stderr}");
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn info_lists_the_devices_and_pids_isolators() {
    require_root!();
    let agent = Agent::start();
    let devices = agent.isolator_info("devices");
    assert_eq!(devices["filter"], "devices.allow");
    assert_eq!(
        devices["default_allow"].as_array().unwrap().len(),
        DEFAULT_LIST.len()
    );
    let pids = agent.isolator_info("pids");
    assert_eq!(pids["default_limit"], 4096);
    let out = agent.berth(&["info"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("devices ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("pids ")), "{text}");
}
