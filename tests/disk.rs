//! The disk isolator end to end: the du backend ending a container over its
//! quota, the loop backend refusing writes past it, and bad quotas refused
//! before anything is made. The xfs backend: tests/xfs_quota.rs.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_cgroups::testing::threads_named;
use common::{eventually, Agent};
use serde_json::json;

const MIB: u64 = 1 << 20;

fn mounted(path: &Path) -> bool {
    let needle = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|line| line.split(' ').any(|field| field == needle))
}

fn loop_devices_backed_by(image: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if !entry.file_name().to_string_lossy().starts_with("loop") {
            continue;
        }
        if let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) {
            if backing.trim_end().trim_end_matches(" (deleted)") == image.display().to_string() {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    found
}

/// Unmounts and detaches what a failed loop test left behind, so a failure
/// does not leak mounts or loop devices into the machine.
struct LoopLeftovers {
    sandbox: PathBuf,
    image: PathBuf,
}

impl Drop for LoopLeftovers {
    fn drop(&mut self) {
        if mounted(&self.sandbox) {
            let _ = nix::mount::umount2(&self.sandbox, nix::mount::MntFlags::MNT_DETACH);
        }
        for device in loop_devices_backed_by(&self.image) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &format!("/dev/{device}")])
                .status();
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

#[test]
fn du_ends_a_container_over_its_quota() {
    require_root!();
    let agent = Agent::start_with_config("[disk]\nbackend = \"du\"\ninterval_seconds = 0.5\n");
    let start = Instant::now();
    agent.launch(json!({
        "id": "filler",
        "command": ["sh", "-c", "dd if=/dev/zero of=big bs=1M count=50 2>/dev/null; echo written; sleep 60"],
        "resources": {"disk": 20 * MIB},
    }));
    // On a slow machine the poller may end it before dd is done: wait for
    // the end, not for dd.
    let ended = agent.wait("filler");
    assert_eq!(ended["reason"], "disk-limit", "{ended}\n{}", agent.log());
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(40) * common::time_scale(),
        "ended {took:?} after the launch (interval 0.5 s)"
    );
    let message = ended["limitation"]["message"].as_str().unwrap();
    assert!(message.starts_with("disk usage "), "{message}");
    assert!(message.ends_with("exceeds quota 20.0 MiB"), "{message}");
    assert_eq!(ended["limitation"]["resource"], "disk");
    // Killed, not exited on its own.
    assert_eq!(ended["signal"], 9);
}

#[test]
fn du_reports_usage_without_a_quota_and_leaves_the_container_alone() {
    require_root!();
    let agent = Agent::start_with_config("[disk]\nbackend = \"du\"\ninterval_seconds = 0.5\n");
    agent.launch(json!({
        "id": "free",
        "command": ["sh", "-c", "dd if=/dev/zero of=big bs=1M count=3 2>/dev/null; echo written; sleep 30"],
    }));
    eventually(Duration::from_secs(30), "the write to finish", || {
        agent.stdout("free").contains("written").then_some(())
    });
    let stats = agent.api("GET", "/v1/containers/free/stats", None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let disk = &stats.body["isolators"]["disk"];
    assert_eq!(disk["backend"], "du");
    assert!(disk["used_bytes"].as_u64().unwrap() >= 3 * MIB, "{disk}");
    assert!(disk.get("limit_bytes").is_none(), "{disk}");
    let described = agent.isolator_info("disk");
    assert_eq!(described["backend"], "du");
    assert_eq!(described["interval_seconds"], 0.5);
}

/// Without a quota no thread measures the sandbox; a quota set later by an
/// update starts one, and it ends the container as at launch.
#[test]
fn du_measures_from_a_quota_set_by_an_update() {
    require_root!();
    let agent = Agent::start_with_config("[disk]\nbackend = \"du\"\ninterval_seconds = 0.5\n");
    let container = agent.launch(json!({
        "id": "later",
        "command": ["sh", "-c", "while [ ! -e go ]; do sleep 0.1; done; dd if=/dev/zero of=big bs=1M count=50 2>/dev/null; sleep 60"],
    }));
    let sandbox = PathBuf::from(container["sandbox"].as_str().unwrap());
    let agent_pid = agent.pid().expect("the agent runs");
    assert_eq!(
        threads_named(Some(agent_pid), "berth-du-later"),
        0,
        "a watcher without a quota"
    );
    let updated = agent.api(
        "PATCH",
        "/v1/containers/later/resources",
        Some(json!({"disk": 20 * MIB})),
    );
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    // A new thread takes its name itself, once it runs.
    eventually(
        Duration::from_secs(10),
        "the watcher after the update",
        || (threads_named(Some(agent_pid), "berth-du-later") == 1).then_some(()),
    );
    std::fs::write(sandbox.join("go"), b"").unwrap();
    let ended = agent.wait("later");
    assert_eq!(ended["reason"], "disk-limit", "{ended}\n{}", agent.log());
    assert!(
        (ended["limitation"]["message"].as_str().unwrap()).ends_with("exceeds quota 20.0 MiB"),
        "{ended}"
    );
}

#[test]
fn loop_refuses_writes_past_the_quota_and_keeps_the_sandbox() {
    require_root!();
    if !Path::new("/dev/loop-control").exists() {
        common::skip(module_path!(), "no loop devices on this host");
        return;
    }
    let mut agent = Agent::start_with_config("[disk]\nbackend = \"loop\"\n");
    let sandbox = agent.sandbox("boxed");
    let image = agent.work_dir.join("disk-images/boxed.img");
    let _leftovers = LoopLeftovers {
        sandbox: sandbox.clone(),
        image: image.clone(),
    };
    // Something in stdout first: its block is allocated, so the lines after
    // the disk is full still fit in it.
    agent.launch(json!({
        "id": "boxed",
        "command": ["sh", "-c", "echo start; dd if=/dev/zero of=big bs=1M count=50; echo \"dd exit $?\"; sleep 3; echo alive"],
        "resources": {"disk": 20 * MIB},
    }));
    assert!(mounted(&sandbox), "the sandbox is not a mount");
    assert!(image.exists());
    eventually(Duration::from_secs(30), "dd to end", || {
        agent.stdout("boxed").contains("dd exit").then_some(())
    });
    let stats = agent.api("GET", "/v1/containers/boxed/stats", None);
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let disk = &stats.body["isolators"]["disk"];
    assert_eq!(disk["backend"], "loop");
    assert_eq!(disk["limit_bytes"], 20 * MIB);
    let used = disk["used_bytes"].as_u64().unwrap();
    assert!(used <= 20 * MIB, "used {used} over the quota");
    assert!(
        used >= 15 * MIB,
        "used {used}: the image is much smaller than the quota"
    );

    let ended = agent.wait("boxed");
    assert_eq!(ended["reason"], "exited", "{ended}");
    assert_eq!(ended["exit_code"], 0);
    let stdout = agent.stdout("boxed");
    assert!(stdout.contains("dd exit 1"), "dd did not fail: {stdout:?}");
    assert!(stdout.contains("alive"), "{stdout:?}");

    // After the exit (its cleanup follows the wait, decision 0044): a plain
    // dir again, with the container's files.
    eventually(Duration::from_secs(10), "the sandbox's unmount", || {
        (!mounted(&sandbox) && !image.exists()).then_some(())
    });
    // Autoclear lets the device go when its last mount does; a mount
    // namespace made meanwhile by another test's container may hold that
    // mount a moment longer (until the unmount propagates to it).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !loop_devices_backed_by(&image).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        loop_devices_backed_by(&image).is_empty(),
        "{:?}\n{}",
        loop_devices_backed_by(&image),
        agent.log()
    );
    // The logs are beside the sandbox, not in it (nor in its quota).
    let stdout_file = std::fs::read_to_string(agent.log_dir("boxed").join("stdout")).unwrap();
    assert!(stdout_file.contains("alive"), "{stdout_file:?}");
    let big = sandbox.join("big").metadata().unwrap().len();
    assert!(big > 10 * MIB && big <= 20 * MIB, "big is {big} bytes");
    assert!(!sandbox.join("lost+found").exists());

    let removed = agent.api("DELETE", "/v1/containers/boxed", None);
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    assert!(!mounted(&sandbox));
    assert!(!mounted(&image));
    assert!(loop_devices_backed_by(&image).is_empty());
    assert!(!sandbox.exists());
    agent.kill_agent();
}

#[test]
fn loop_refuses_to_resize_a_running_image() {
    require_root!();
    if !Path::new("/dev/loop-control").exists() {
        common::skip(module_path!(), "no loop devices on this host");
        return;
    }
    let agent = Agent::start_with_config("[disk]\nbackend = \"loop\"\n");
    let _leftovers = LoopLeftovers {
        sandbox: agent.sandbox("fixed"),
        image: agent.work_dir.join("disk-images/fixed.img"),
    };
    agent.launch(json!({
        "id": "fixed",
        "command": ["sleep", "30"],
        "resources": {"disk": 8 * MIB},
    }));
    let answer = agent.api(
        "PATCH",
        "/v1/containers/fixed/resources",
        Some(json!({"disk": 16 * MIB})),
    );
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("resize"), "{message}");
}

#[test]
fn bad_quotas_are_refused_before_anything_is_made() {
    require_root!();
    for backend in ["du", "loop"] {
        if backend == "loop" && !Path::new("/dev/loop-control").exists() {
            continue;
        }
        let agent = Agent::start_with_config(&format!("[disk]\nbackend = \"{backend}\"\n"));
        for disk in [0, 100, MIB - 1] {
            let answer = agent.api(
                "POST",
                "/v1/containers",
                Some(json!({"id": "bad", "command": ["true"], "resources": {"disk": disk}})),
            );
            assert_eq!(answer.status, 400, "{backend} {disk}: {:?}", answer.body);
            let message = answer.body["error"]["message"].as_str().unwrap();
            assert!(message.contains("resources.disk"), "{message}");
        }
        if backend == "loop" {
            let answer = agent.api(
                "POST",
                "/v1/containers",
                Some(json!({"id": "bad", "command": ["true"], "resources": {"disk": (1u64 << 40) + 1}})),
            );
            assert_eq!(answer.status, 400, "{:?}", answer.body);
        }
        assert!(agent.leftovers().is_empty(), "{:?}", agent.leftovers());
        let images = agent.work_dir.join("disk-images");
        let left: Vec<_> = std::fs::read_dir(&images)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(agent.api("GET", "/v1/containers/bad", None).status, 404);
    }
}
