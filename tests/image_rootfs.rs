//! A container's own root filesystem (decision 0024): an overlay of
//! read-only lower dirs (a `--rootfs` dir, an image's layers) under the
//! container's own writable layer, mounted inside the container's mount
//! namespace; mount points made in that layer, never in the lower dirs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, Agent};
use serde_json::json;

/// A root filesystem with nothing but `bin/` (busybox and a few applets).
fn bin_only_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("binonly");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (.ci/run installs it)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "ls", "touch", "sleep", "mkdir", "id", "pwd",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    rootfs
}

/// Every entry below `root`: type, mode, size, mtime (ns), inode.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        out.insert(
            dir.strip_prefix(root).unwrap().to_path_buf(),
            (
                meta.mode(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ino(),
            ),
        );
        if meta.is_dir() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path);
                } else {
                    out.insert(
                        path.strip_prefix(root).unwrap().to_path_buf(),
                        (
                            meta.mode(),
                            meta.size(),
                            meta.mtime(),
                            meta.mtime_nsec(),
                            meta.ino(),
                        ),
                    );
                }
            }
        }
    }
    out
}

fn remove(agent: &Agent, id: &str) {
    let answer = agent.api("DELETE", &format!("/v1/containers/{id}?force=true"), None);
    assert_eq!(answer.status, 204, "rm {id}: {:?}", answer.body);
}

#[test]
fn a_rootfs_with_only_bin_runs_writes_anywhere_and_is_left_unmodified() {
    require_root!();
    let agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    let before = snapshot(&rootfs);
    agent.launch(json!({
        "id": "binonly",
        "command": ["/bin/sh", "-c",
            "echo new > /newfile && mkdir -p /etc/deep && echo x > /etc/deep/f && \
             echo over > /bin/newtool && cat /newfile /etc/deep/f && ls -d /proc/1 /sys /dev/null /tmp /sandbox && pwd"],
        "rootfs": rootfs,
    }));
    let done = agent.wait("binonly");
    let out = agent.stdout("binonly");
    assert_eq!(done["exit_code"], 0, "{out} {done}");
    assert_eq!(
        out,
        "new\nx\n/dev/null\n/proc/1\n/sandbox\n/sys\n/tmp\n/sandbox\n"
    );
    // The writes went to the container's own layer, not to the dir.
    assert_eq!(snapshot(&rootfs), before, "the --rootfs dir changed");
    let upper = agent.container_dir("binonly").join("root/upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("newfile")).unwrap(),
        "new\n"
    );
    // Another container of the same dir sees none of it.
    agent.launch(json!({
        "id": "second",
        "command": ["/bin/sh", "-c", "ls /newfile /bin/newtool 2>/dev/null || echo gone"],
        "rootfs": rootfs,
    }));
    agent.wait("second");
    assert!(
        agent.stdout("second").contains("gone"),
        "{}",
        agent.stdout("second")
    );
    // rm takes the writes with it.
    remove(&agent, "binonly");
    remove(&agent, "second");
    assert!(!agent.container_dir("binonly").exists());
    assert_eq!(snapshot(&rootfs), before, "the --rootfs dir changed");
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}

#[test]
fn read_only_refuses_writes_to_the_root_but_not_to_tmp_or_the_sandbox() {
    require_root!();
    let agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    agent.launch(json!({
        "id": "ro",
        "command": ["/bin/sh", "-c",
            "touch /x 2>/dev/null || echo root=ro; touch /bin/y 2>/dev/null || echo bin=ro; \
             touch /tmp/t && echo tmp=rw; touch /sandbox/s && echo sandbox=rw"],
        "rootfs": rootfs,
        "read_only": true,
    }));
    agent.wait("ro");
    assert_eq!(agent.stdout("ro"), "root=ro\nbin=ro\ntmp=rw\nsandbox=rw\n");
    let inspect = agent.api("GET", "/v1/containers/ro", None);
    assert_eq!(inspect.body["read_only"], true);
}

#[test]
fn the_cli_runs_a_rootfs_command_without_dashes() {
    require_root!();
    let agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    let out = agent.berth(&[
        "run",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "sh",
        "-c",
        "echo hi > /f && cat /f",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn an_overlay_container_survives_an_agent_kill_and_rm_cleans_its_dirs() {
    require_root!();
    let mut agent = Agent::start();
    let rootfs = bin_only_rootfs(agent.dir.path());
    agent.launch(json!({
        "id": "kept",
        "command": ["/bin/sh", "-c", "echo data > /kept; exec sleep 1000"],
        "rootfs": rootfs,
    }));
    let upper = agent.container_dir("kept").join("root/upper");
    eventually(Duration::from_secs(10), "the write", || {
        upper.join("kept").exists().then_some(())
    });
    agent.kill_agent();
    agent.start_again();
    let inspect = agent.api("GET", "/v1/containers/kept", None);
    assert_eq!(inspect.body["state"], "running", "{:?}", inspect.body);
    // Nothing of the container is mounted on the host.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(agent.container_dir("kept").to_str().unwrap()),
        "{mounts}"
    );
    let stop = agent.api("POST", "/v1/containers/kept/stop?timeout=1", None);
    assert!(stop.status < 300, "{:?}", stop.body);
    agent.wait("kept");
    remove(&agent, "kept");
    assert!(!agent.container_dir("kept").exists());
    assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
}
