//! XFS project quotas on a real kernel: the disk isolator's xfs backend
//! with the agent's work dir on a loop-backed XFS mounted with `prjquota`
//! (tests/common/xfs.rs). Skipped where the kernel has no XFS quota (this
//! dev host, the CI host); run for real in the cgroup v2 VM
//! (`V2VM_TESTS=xfs_quota .ci/v2-vm/suite.sh`), whose Debian kernel has it.

mod common;

#[path = "common/xfs.rs"]
mod xfs;

use std::time::Duration;

use common::{eventually, Agent};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;
const XFS: &str = "[disk]\nbackend = \"xfs\"\n";

fn project_of(agent: &Agent, id: &str) -> u64 {
    let inspect = agent.api("GET", &format!("/v1/containers/{id}"), None);
    assert_eq!(inspect.status, 200, "{:?}", inspect.body);
    inspect.body["status"]["disk"]["xfs_project"]
        .as_u64()
        .unwrap_or_else(|| panic!("no xfs project in {}\n{}", inspect.body, agent.log()))
}

fn disk_stats(agent: &Agent, id: &str) -> Value {
    let stats = agent.api("GET", &format!("/v1/containers/{id}/stats"), None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    stats.body["isolators"]["disk"].clone()
}

/// A 20 MiB project quota: the write past it fails, what was written
/// stays, usage is reported; after `kill -9` of the agent the quota still
/// holds and its id is not handed out twice; the id is freed when the
/// container goes and the next container gets it again.
#[test]
fn xfs_quota_refuses_writes_past_it_and_survives_an_agent_kill() {
    require_root!();
    let Some(mount) = xfs::mount_prjquota(
        "xfs_quota::xfs_quota_refuses_writes_past_it_and_survives_an_agent_kill",
    ) else {
        return;
    };
    let mut agent = Agent::start_in(&mount.path.join("work"), XFS);
    let described = agent.isolator_info("disk");
    assert_eq!(described["backend"], "xfs", "{described}");
    assert_eq!(described["xfs_project_quota"], true, "{described}");
    assert_eq!(described["xfs_device"], mount.device(), "{described}");

    // Writes 50 MiB into 20.
    agent.launch(json!({
        "id": "boxed",
        "command": ["sh", "-c", "echo start; dd if=/dev/zero of=big bs=1M count=50; echo \"dd exit $?\"; exec sleep 600"],
        "resources": {"disk": 20 * MIB},
    }));
    eventually(Duration::from_secs(30), "dd to end", || {
        agent.stdout("boxed").contains("dd exit").then_some(())
    });
    let stdout = agent.stdout("boxed");
    assert!(stdout.contains("dd exit 1"), "dd did not fail: {stdout:?}");
    let stderr = String::from_utf8_lossy(
        &agent
            .api("GET", "/v1/containers/boxed/logs?stream=stderr", None)
            .raw,
    )
    .into_owned();
    assert!(
        stderr.contains("No space left on device") || stderr.contains("Disk quota exceeded"),
        "{stderr:?}"
    );
    let sandbox = agent.sandbox("boxed");
    let big = sandbox.join("big").metadata().unwrap().len();
    assert!(big > 15 * MIB && big <= 20 * MIB, "big is {big} bytes");

    let project = project_of(&agent, "boxed");
    assert!((5000..=9999).contains(&project), "{project}");
    let disk = disk_stats(&agent, "boxed");
    assert_eq!(disk["backend"], "xfs", "{disk}");
    assert_eq!(disk["limit_bytes"], 20 * MIB, "{disk}");
    let used = disk["used_bytes"].as_u64().unwrap();
    assert!(used > 15 * MIB && used <= 20 * MIB, "used {used}");

    // kill -9: nothing of the quota lives in the agent.
    agent.kill_agent();
    agent.start_again();
    assert_eq!(project_of(&agent, "boxed"), project);
    let disk = disk_stats(&agent, "boxed");
    assert_eq!(disk["limit_bytes"], 20 * MIB, "{disk}");
    assert!(disk["used_bytes"].as_u64().unwrap() > 15 * MIB, "{disk}");
    // The recovered id is taken: a new container gets another one.
    agent.launch(
        json!({"id": "second", "command": ["sleep", "600"], "resources": {"disk": 20 * MIB}}),
    );
    let second = project_of(&agent, "second");
    assert_ne!(second, project);
    // The kernel still enforces it (even an empty file's directory entry
    // finds no room: the test cannot make one in the full sandbox).
    let exec = agent.api(
        "POST",
        "/v1/containers/boxed/exec",
        Some(json!({"command": ["sh", "-c", "dd if=/dev/zero of=more bs=1M count=5; echo \"more exit $?\""]})),
    );
    assert_eq!(exec.status, 200, "{:?}", exec.body);
    let out = exec.body["stdout"].as_str().unwrap_or_default();
    assert!(out.contains("more exit 1"), "{:?}", exec.body);
    let more = sandbox
        .join("more")
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(more < MIB, "wrote {more} bytes past the recovered quota");

    // Removed: the id is free again and the lowest, so the next one gets it.
    let removed = agent.api("DELETE", "/v1/containers/boxed?force=true", None);
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    agent.launch(
        json!({"id": "third", "command": ["sleep", "600"], "resources": {"disk": 8 * MIB}}),
    );
    assert_eq!(project_of(&agent, "third"), project, "{}", agent.log());
    // And its quota is its own: nothing of boxed's files is charged to it.
    let disk = disk_stats(&agent, "third");
    assert!(disk["used_bytes"].as_u64().unwrap() < MIB, "{disk}");
    assert_eq!(disk["limit_bytes"], 8 * MIB, "{disk}");
}

/// With the xfs disk backend, `volume create --size 20M` is a project
/// quota, not a loop image: writes into it from a container fail at 20 MiB
/// and are charged to the volume, not the container's sandbox; its id comes
/// from the same allocator as the sandboxes' (never shared, also after a
/// `kill -9` of the agent) and is freed when the volume is removed.
#[test]
fn xfs_sized_volume_is_a_project_quota_of_its_own() {
    require_root!();
    let Some(mount) =
        xfs::mount_prjquota("xfs_quota::xfs_sized_volume_is_a_project_quota_of_its_own")
    else {
        return;
    };
    let mut agent = Agent::start_in(&mount.path.join("work"), XFS);
    let rootfs = common::busybox_rootfs(agent.dir.path());
    let out = agent.berth(&["volume", "create", "small", "--size", "20M"]);
    assert!(out.status.success(), "{out:?}\n{}", agent.log());
    let volume_dir = agent.work_dir.join("volumes/small");
    let data = volume_dir.join("_data");
    assert!(
        !volume_dir.join("volume.img").exists(),
        "a loop image was made"
    );
    let inspect = agent.api("GET", "/v1/volumes/small", None).body;
    assert_eq!(inspect["size"], 20 * MIB, "{inspect}");
    let volume_project = inspect["xfs_project"]
        .as_u64()
        .unwrap_or_else(|| panic!("no xfs project in {inspect}"));

    agent.launch(json!({
        "id": "filler",
        "rootfs": rootfs,
        "command": ["sh", "-c", "echo keep > /data/keep; \
                     busybox dd if=/dev/zero of=/data/big bs=1M count=50 2>/dev/null; \
                     echo \"dd exit $?\"; exec sleep 600"],
        "mounts": [{"type": "volume", "source": "small", "target": "/data"}],
        "resources": {"disk": 8 * MIB},
    }));
    eventually(Duration::from_secs(60), "dd to end", || {
        agent.stdout("filler").contains("dd exit").then_some(())
    });
    let stdout = agent.stdout("filler");
    assert!(stdout.contains("dd exit 1"), "dd did not fail: {stdout}");
    let big = std::fs::metadata(data.join("big")).unwrap().len();
    assert!(
        (15 * MIB..=20 * MIB).contains(&big),
        "wrote {big} bytes into a 20 MiB volume"
    );
    let sandbox_project = project_of(&agent, "filler");
    assert_ne!(sandbox_project, volume_project);
    let inspect = agent.api("GET", "/v1/volumes/small", None).body;
    let used = inspect["used_bytes"].as_u64().unwrap();
    assert!((15 * MIB..=20 * MIB).contains(&used), "{inspect}");
    eprintln!("20 MiB xfs volume: dd wrote {big} bytes, used_bytes {used}");
    let stats = agent.api("GET", "/v1/containers/filler/stats", None).body;
    assert_eq!(stats["volumes"]["small"]["size"], 20 * MIB, "{stats}");
    assert!(stats["volumes"]["small"]["used_bytes"].as_u64().unwrap() >= 15 * MIB);
    // Charged to the volume, not to the container's 8 MiB.
    let sandbox_used = stats["isolators"]["disk"]["used_bytes"].as_u64().unwrap();
    assert!(sandbox_used < MIB, "{stats}");

    // kill -9: the id is read back from the volume's dir and stays taken.
    agent.kill_agent();
    agent.start_again();
    let inspect = agent.api("GET", "/v1/volumes/small", None).body;
    assert_eq!(inspect["xfs_project"], volume_project, "{inspect}");
    assert_eq!(inspect["used_by"], json!(["filler"]), "{inspect}");
    agent.launch(
        json!({"id": "other", "command": ["sleep", "600"], "resources": {"disk": 8 * MIB}}),
    );
    let other = project_of(&agent, "other");
    assert!(
        other != volume_project && other != sandbox_project,
        "{other} reused"
    );
    let exec = agent.api(
        "POST",
        "/v1/containers/filler/exec",
        Some(json!({"command": ["sh", "-c", "cat /data/keep; busybox dd if=/dev/zero of=/data/more bs=1M count=2 2>/dev/null; echo \"more exit $?\""]})),
    );
    assert_eq!(exec.status, 200, "{:?}", exec.body);
    let out = exec.body["stdout"].as_str().unwrap_or_default();
    assert!(out.starts_with("keep\n"), "{out:?}");
    assert!(out.contains("more exit 1"), "{out:?}");

    // Removed (its container first): the id is free, the lowest, and taken
    // by the next sized volume.
    let removed = agent.api("DELETE", "/v1/containers/filler?force=true", None);
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    let removed = agent.api("DELETE", "/v1/volumes/small", None);
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    assert!(!volume_dir.exists());
    let again = agent.create_volume(json!({"name": "again", "size": 20 * MIB}));
    assert_eq!(
        again["xfs_project"],
        volume_project.min(sandbox_project),
        "{again}"
    );
}

/// The attack: root in the container (host user namespace) takes its file
/// out of the project (`FS_IOC_FSSETXATTR` with project 0) and writes past
/// the quota. It must fail: the ioctl is refused, or the write still stops
/// at the quota.
#[test]
fn a_container_cannot_move_its_files_out_of_the_project() {
    require_root!();
    let Some(mount) =
        xfs::mount_prjquota("xfs_quota::a_container_cannot_move_its_files_out_of_the_project")
    else {
        return;
    };
    let agent = Agent::start_in(&mount.path.join("work"), XFS);
    let script = r#"
import fcntl, os, struct
f = os.open("escape", os.O_CREAT | os.O_WRONLY, 0o644)
buf = bytearray(28)
fcntl.ioctl(f, 0x801c581f, buf)
xflags, ext, next, projid, cow = struct.unpack_from("IIIII", buf)
print("project", projid)
struct.pack_into("IIIII", buf, 0, xflags & ~0x200, ext, next, 0, cow)
try:
    fcntl.ioctl(f, 0x401c5820, bytes(buf))
    print("setattr ok")
except OSError as e:
    print("setattr errno", e.errno)
n = 0
try:
    for i in range(40):
        os.write(f, b"\0" * (1 << 20))
        n += 1
except OSError as e:
    print("write errno", e.errno)
print("wrote MiB", n, flush=True)
"#;
    agent.launch(json!({
        "id": "attacker",
        "command": ["python3", "-c", script],
        "resources": {"disk": 20 * MIB},
    }));
    let ended = agent.wait("attacker");
    let stdout = agent.stdout("attacker");
    eprintln!("attack: {stdout}");
    assert_eq!(ended["exit_code"], 0, "{ended}\n{stdout}");
    // The default seccomp profile refuses the ioctl (EPERM).
    assert!(stdout.contains("setattr errno 1"), "{stdout}");
    let wrote: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrote MiB "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        wrote <= 20,
        "wrote {wrote} MiB past a 20 MiB quota: {stdout}"
    );
    let size = agent
        .sandbox("attacker")
        .join("escape")
        .metadata()
        .unwrap()
        .len();
    assert!(size <= 20 * MIB, "{size}");
}
