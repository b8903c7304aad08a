//! The memory isolator against the real kernel (root, cgroup v1 or v2): a
//! hog is OOM-killed at 64 MiB and reported both ways; a limit below usage is
//! refused; raising and lowering respect the memsw ordering.

use berth_isolator::TypedSection;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use berth_cgroups::testing::{skip_unless_root, threads_named, TestRoot};
use berth_cgroups::{CgroupMode, CgroupRoot, ContainerCgroup, Controller};
use berth_isolator::{
    ContainerConfig, ContainerId, Isolator, IsolatorError, Limitation, LimitationReporter,
};
use berth_isolator_memory::MemoryResources;
use berth_isolator_memory::{MemoryIsolator, MemoryOptions};

const MIB: u64 = 1 << 20;

/// A child that sleeps a little (so that it is isolated before it
/// allocates: memory charged before the move stays with the old cgroup),
/// then holds `mib` MiB for `hold` seconds.
fn spawn_allocating(mib: u64, hold: u32) -> Child {
    if Path::new("/usr/bin/python3").exists() {
        let code =
            format!("import time; time.sleep(0.5); x = b'a' * ({mib} << 20); time.sleep({hold})");
        Command::new("/usr/bin/python3")
            .args(["-c", &code])
            .spawn()
            .unwrap()
    } else {
        let script = format!("sleep 0.5; x=$(head -c {mib}M /dev/zero | tr '\\0' a); sleep {hold}");
        Command::new("sh").args(["-c", &script]).spawn().unwrap()
    }
}

fn config(id: &ContainerId, memory: u64) -> ContainerConfig {
    let mut config = ContainerConfig::for_command(id.clone(), ["hog"]);
    config.resources = MemoryResources {
        memory: Some(memory),
        ..Default::default()
    }
    .into_resources();
    config
}

fn limit_files(cgroup: &ContainerCgroup) -> Vec<u64> {
    let files: &[&str] = match cgroup.mode() {
        CgroupMode::V1 if cgroup.has_file(Controller::Memory, "memory.memsw.limit_in_bytes") => {
            &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        }
        CgroupMode::V1 => &["memory.limit_in_bytes"],
        CgroupMode::V2 => &["memory.max"],
    };
    files
        .iter()
        .map(|f| cgroup.read_u64(Controller::Memory, f).unwrap())
        .collect()
}

/// A container `name` prepared with a 64 MiB limit under a fresh test root,
/// its limitations reported to the receiver: the root, the isolator, the
/// id, the container's cgroup and the receiver.
fn prepare_and_watch(
    name: &str,
) -> (
    TestRoot,
    MemoryIsolator,
    ContainerId,
    ContainerCgroup,
    mpsc::Receiver<Limitation>,
) {
    let root = TestRoot::detect();
    let isolator = MemoryIsolator::new(root.shared(), MemoryOptions::default()).unwrap();
    let id = ContainerId::new(name).unwrap();
    isolator.prepare(&id, &config(&id, 64 * MIB)).unwrap();
    let cgroup = root.container(name).unwrap();
    let (tx, reports) = mpsc::channel();
    let tx = Mutex::new(tx);
    isolator
        .watch(
            &id,
            LimitationReporter::new(move |l| tx.lock().unwrap().send(l).unwrap()),
        )
        .unwrap();
    (root, isolator, id, cgroup, reports)
}

/// Waits (`within` at most, else fails with `why`) until `count` threads
/// of this process are named `name`.
fn wait_for_threads_named(name: &str, count: usize, within: Duration, why: &str) {
    let start = Instant::now();
    while threads_named(None, name) != count {
        assert!(start.elapsed() < within, "{why}");
        thread::sleep(Duration::from_millis(2));
    }
}

fn assert_removed(root: &CgroupRoot, cgroup: &ContainerCgroup) {
    let path = cgroup.path(Controller::Memory).unwrap();
    assert!(!path.exists(), "{} left behind", path.display());
    root.remove().unwrap();
    assert!(!root.dir(Controller::Memory).unwrap().exists());
}

#[test]
fn hog_is_oom_killed_and_reported() {
    if skip_unless_root() {
        return;
    }
    let (root, isolator, id, cgroup, reports) = prepare_and_watch("hog");
    assert!(
        limit_files(&cgroup).iter().all(|l| *l == 64 * MIB),
        "{:?}",
        limit_files(&cgroup)
    );
    let mut child = spawn_allocating(200, 1);
    isolator.isolate(&id, child.id()).unwrap();

    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.signal() == Some(libc::SIGKILL) || !status.success(),
        "the hog must not survive 64 MiB: {status:?}"
    );
    // What the agent does after the exit, whatever the event did.
    let limitation = isolator
        .exit_limitation(&id)
        .unwrap()
        .expect("an oom kill is counted");
    eprintln!("exit_limitation: {}", limitation.message);
    assert_eq!(limitation.reason(), "memory-limit");
    assert!(
        limitation
            .message
            .starts_with("memory limit of 64.0 MiB reached; peak usage "),
        "{}",
        limitation.message
    );
    let reported = reports
        .recv_timeout(Duration::from_secs(5))
        .expect("the watcher reports the oom kill");
    assert_eq!(reported.resource, "memory");
    assert!(
        reported.message.contains("64.0 MiB"),
        "{}",
        reported.message
    );
    assert!(isolator.usage(&id).unwrap()["oom_kills"].as_u64().unwrap() >= 1);

    isolator.cleanup(&id).unwrap();
    assert!(reports.try_recv().is_err(), "reported once");
    assert_removed(&root, &cgroup);
}

#[test]
fn update_below_usage_is_refused_and_memsw_order_holds() {
    if skip_unless_root() {
        return;
    }
    let (root, isolator, id, cgroup, reports) = prepare_and_watch("holder");
    let mut child = spawn_allocating(30, 60);
    isolator.isolate(&id, child.id()).unwrap();

    let start = Instant::now();
    while isolator.usage(&id).unwrap()["current_bytes"]
        .as_u64()
        .unwrap()
        < 24 * MIB
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the child never allocated"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let update = |memory: u64| {
        isolator.update(
            &id,
            &MemoryResources {
                memory: Some(memory),
                ..Default::default()
            }
            .into_resources(),
        )
    };
    let err = update(16 * MIB).unwrap_err();
    assert!(matches!(err, IsolatorError::Refused { .. }), "{err}");
    eprintln!("refused: {err}");
    assert!(
        limit_files(&cgroup).iter().all(|l| *l == 64 * MIB),
        "old limit kept"
    );

    // Raising needs memsw first, lowering needs the limit first: both pass.
    update(128 * MIB).unwrap();
    assert!(
        limit_files(&cgroup).iter().all(|l| *l == 128 * MIB),
        "{:?}",
        limit_files(&cgroup)
    );
    update(96 * MIB).unwrap();
    assert!(
        limit_files(&cgroup).iter().all(|l| *l == 96 * MIB),
        "{:?}",
        limit_files(&cgroup)
    );
    isolator
        .update(
            &id,
            &MemoryResources {
                memory_reservation: Some(32 * MIB),
                ..Default::default()
            }
            .into_resources(),
        )
        .unwrap();
    assert_eq!(
        isolator.usage(&id).unwrap()["soft_limit_bytes"].as_u64(),
        Some(32 * MIB)
    );

    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        isolator.exit_limitation(&id).unwrap(),
        None,
        "killed by us, not by the limit"
    );
    isolator.cleanup(&id).unwrap();
    assert!(reports.try_recv().is_err(), "no oom, no report");
    assert_removed(&root, &cgroup);
}

/// A container without a limit, which no cgroup OOM can hit, has no
/// watcher thread; an update that sets a limit starts one, which reports
/// the OOM kill as at launch.
#[test]
fn an_unlimited_container_is_watched_once_an_update_limits_it() {
    if skip_unless_root() {
        return;
    }
    let root = TestRoot::detect();
    let isolator = MemoryIsolator::new(root.shared(), MemoryOptions::default()).unwrap();
    let id = ContainerId::new("lately").unwrap();
    let unlimited = ContainerConfig::for_command(id.clone(), ["hog"]);
    isolator.prepare(&id, &unlimited).unwrap();
    let cgroup = root.container("lately").unwrap();
    let (tx, reports) = mpsc::channel();
    let tx = Mutex::new(tx);
    let reporter = LimitationReporter::new(move |l| tx.lock().unwrap().send(l).unwrap());
    isolator.watch(&id, reporter).unwrap();
    let watcher = "berth-oom-latel";
    assert_eq!(threads_named(None, watcher), 0, "a watcher without a limit");

    let limited = MemoryResources {
        memory: Some(64 * MIB),
        ..Default::default()
    };
    isolator.update(&id, &limited.into_resources()).unwrap();
    // A new thread takes its name itself, once it runs.
    wait_for_threads_named(
        watcher,
        1,
        Duration::from_secs(10),
        "no watcher after the update",
    );
    let mut child = spawn_allocating(200, 1);
    isolator.isolate(&id, child.id()).unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the hog must not survive 64 MiB: {status:?}"
    );
    let reported = reports
        .recv_timeout(Duration::from_secs(5))
        .expect("the watcher started by the update reports the oom kill");
    assert!(
        reported.message.contains("64.0 MiB"),
        "{}",
        reported.message
    );
    isolator.cleanup(&id).unwrap();
    // The cleanup joined the watcher; the kernel drops the task's entry in
    // /proc a moment after the join returns (the join waits for the tid to
    // be cleared, which happens before the task is released).
    wait_for_threads_named(
        watcher,
        0,
        Duration::from_secs(5),
        "the watcher outlived the cleanup",
    );
    assert_removed(&root, &cgroup);
}
