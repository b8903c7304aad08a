//! The memory isolator against fake cgroupfs trees: the files it writes,
//! the usage it parses, refused updates, and OOM detection on v1 and v2.

use berth_isolator::TypedSection;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_cgroups::fake::{forget_files, id, read, write_files, FakeCgroupfs};
use berth_isolator::{ContainerConfig, Isolator, IsolatorError, LimitationReporter, Resources};
use berth_isolator_memory::MemoryResources;
use berth_isolator_memory::{MemoryIsolator, MemoryOptions};
use serde_json::json;

const MIB: u64 = 1 << 20;
const UNLIMITED: &str = "9223372036854771712";

fn config(name: &str, memory: Option<u64>, reservation: Option<u64>) -> ContainerConfig {
    let mut config = ContainerConfig::for_command(id(name), ["true"]);
    config.resources = MemoryResources {
        memory,
        memory_reservation: reservation,
    }
    .into_resources();
    config
}

fn memory(memory: Option<u64>, reservation: Option<u64>) -> Resources {
    MemoryResources {
        memory,
        memory_reservation: reservation,
    }
    .into_resources()
}

fn channel_reporter() -> (
    LimitationReporter,
    mpsc::Receiver<berth_isolator::Limitation>,
) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    (
        LimitationReporter::new(move |l| tx.lock().unwrap().send(l).unwrap()),
        rx,
    )
}

fn v1(options: MemoryOptions) -> (FakeCgroupfs, PathBuf, MemoryIsolator) {
    let mut host = FakeCgroupfs::new();
    let mount = host.mount_v1("memory", "/agent");
    let isolator = MemoryIsolator::new(host.root("berth"), options).unwrap();
    let dir = mount.join("agent/berth");
    assert!(dir.is_dir(), "new() creates the root");
    (host, dir, isolator)
}

fn fake_v1_container(dir: &Path, memsw: bool) {
    write_files(
        dir,
        &[
            ("cgroup.procs", ""),
            ("cgroup.event_control", ""),
            ("memory.limit_in_bytes", UNLIMITED),
            ("memory.soft_limit_in_bytes", UNLIMITED),
            ("memory.usage_in_bytes", "1048576\n"),
            ("memory.max_usage_in_bytes", "2097152\n"),
            (
                "memory.stat",
                "cache 100\nrss 200\ntotal_cache 4096\ntotal_rss 8192\ntotal_inactive_file 24576\n",
            ),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
        ],
    );
    if memsw {
        write_files(dir, &[("memory.memsw.limit_in_bytes", UNLIMITED)]);
    }
}

#[test]
fn v1_prepare_usage_update_exit_limitation_cleanup() {
    let (_host, root, isolator) = v1(MemoryOptions::default());
    let dir = root.join("c1");
    fake_v1_container(&dir, true);
    let c1 = id("c1");
    let contribution = isolator
        .prepare(&c1, &config("c1", Some(64 * MIB), Some(32 * MIB)))
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(contribution.linux_resources),
        json!({"memory": {"limit": 67108864, "reservation": 33554432}})
    );
    assert_eq!(read(dir.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(dir.join("memory.memsw.limit_in_bytes")), "67108864");
    assert_eq!(read(dir.join("memory.soft_limit_in_bytes")), "33554432");

    isolator.isolate(&c1, 4242).unwrap();

    berth_cgroups::fake::assert_joinable_where_isolated(&isolator, &c1, 4242);
    assert_eq!(read(dir.join("cgroup.procs")), "4242");

    let usage = isolator.usage(&c1).unwrap();
    assert_eq!(usage["current_bytes"], json!(1048576));
    assert_eq!(usage["peak_bytes"], json!(2097152));
    assert_eq!(usage["rss_bytes"], json!(8192));
    assert_eq!(usage["cache_bytes"], json!(4096));
    // cAdvisor's working set: usage minus total_inactive_file.
    assert_eq!(usage["working_set_bytes"], json!(1048576 - 24576));
    assert_eq!(usage["limit_bytes"], json!(67108864));
    assert_eq!(usage["soft_limit_bytes"], json!(33554432));
    assert_eq!(usage["oom_kills"], json!(0));

    // A limit below the current usage is refused; the old limit stays.
    fs::write(dir.join("memory.usage_in_bytes"), (100 * MIB).to_string()).unwrap();
    let err = isolator
        .update(&c1, &memory(Some(80 * MIB), None))
        .unwrap_err();
    assert!(matches!(err, IsolatorError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains("80.0 MiB") && err.to_string().contains("100.0 MiB"),
        "{err}"
    );
    assert_eq!(read(dir.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(dir.join("memory.memsw.limit_in_bytes")), "67108864");

    isolator
        .update(&c1, &memory(Some(128 * MIB), None))
        .unwrap();
    assert_eq!(read(dir.join("memory.limit_in_bytes")), "134217728");
    assert_eq!(read(dir.join("memory.memsw.limit_in_bytes")), "134217728");
    assert_eq!(
        read(dir.join("memory.soft_limit_in_bytes")),
        "33554432",
        "left out: kept"
    );

    // A reservation above the (kept) limit, or a tiny limit, is invalid.
    let err = isolator
        .update(&c1, &memory(None, Some(256 * MIB)))
        .unwrap_err();
    assert!(
        matches!(&err, IsolatorError::InvalidConfig { field, .. } if field == "resources.memory_reservation")
    );
    let err = isolator.update(&c1, &memory(Some(MIB), None)).unwrap_err();
    assert!(
        matches!(&err, IsolatorError::InvalidConfig { field, .. } if field == "resources.memory")
    );
    isolator.update(&c1, &memory(None, Some(16 * MIB))).unwrap();
    assert_eq!(read(dir.join("memory.soft_limit_in_bytes")), "16777216");
    assert_eq!(read(dir.join("memory.limit_in_bytes")), "134217728");

    assert_eq!(isolator.exit_limitation(&c1).unwrap(), None);
    fs::write(
        dir.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    )
    .unwrap();
    fs::write(
        dir.join("memory.max_usage_in_bytes"),
        (128 * MIB).to_string(),
    )
    .unwrap();
    let limitation = isolator.exit_limitation(&c1).unwrap().expect("an oom kill");
    assert_eq!(limitation.resource, "memory");
    assert_eq!(
        limitation.message,
        "memory limit of 128.0 MiB reached; peak usage 128.0 MiB"
    );
    assert_eq!(isolator.usage(&c1).unwrap()["oom_kills"], json!(1));

    forget_files(&dir);
    isolator.cleanup(&c1).unwrap();
    assert!(!dir.exists());
    isolator.cleanup(&c1).unwrap();
    isolator.cleanup(&id("never-seen")).unwrap();
    assert!(matches!(
        isolator.exit_limitation(&c1),
        Err(IsolatorError::UnknownContainer { .. })
    ));
}

#[test]
fn v1_without_swap_accounting_sets_only_the_limit() {
    let (_host, root, isolator) = v1(MemoryOptions::default());
    assert_eq!(isolator.describe()["swap_limited"], json!(false));
    let dir = root.join("c1");
    fake_v1_container(&dir, false);
    let contribution = isolator
        .prepare(&id("c1"), &config("c1", Some(64 * MIB), None))
        .unwrap();
    assert_eq!(
        contribution.linux_resources["memory"],
        json!({"limit": 67108864})
    );
    assert_eq!(read(dir.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(dir.join("memory.soft_limit_in_bytes")), UNLIMITED);
    assert!(!dir.join("memory.memsw.limit_in_bytes").exists());
    let usage = isolator.usage(&id("c1")).unwrap();
    assert!(
        usage.get("soft_limit_bytes").is_none(),
        "unlimited is left out"
    );
}

#[test]
fn no_memory_asked_creates_the_cgroup_without_limits() {
    let (_host, root, isolator) = v1(MemoryOptions::default());
    let dir = root.join("c1");
    fake_v1_container(&dir, true);
    let contribution = isolator
        .prepare(&id("c1"), &config("c1", None, None))
        .unwrap();
    assert!(contribution.linux_resources.is_empty());
    assert_eq!(read(dir.join("memory.limit_in_bytes")), UNLIMITED);
    assert!(isolator
        .usage(&id("c1"))
        .unwrap()
        .get("limit_bytes")
        .is_none());
}

#[test]
fn invalid_requests_touch_nothing() {
    let (_host, root, isolator) = v1(MemoryOptions::default());
    let err = isolator
        .validate(&config("c1", Some(64 * MIB), Some(65 * MIB)))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid resources.memory_reservation"),
        "{err}"
    );
    assert!(isolator
        .prepare(&id("c1"), &config("c1", Some(1 << 51), None))
        .is_err());
    assert!(!root.join("c1").exists());
}

#[test]
fn v1_watcher_registers_an_eventfd_and_stops_at_cleanup() {
    let (_host, root, isolator) = v1(MemoryOptions::default());
    let dir = root.join("c1");
    fake_v1_container(&dir, true);
    let c1 = id("c1");
    isolator
        .prepare(&c1, &config("c1", Some(64 * MIB), None))
        .unwrap();
    let (reporter, reports) = channel_reporter();
    isolator.watch(&c1, reporter).unwrap();
    let registration = read(dir.join("cgroup.event_control"));
    let fds: Vec<u32> = registration
        .split(' ')
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fds.len(), 2, "{registration:?}");
    // No kernel signals this eventfd: cleanup must still end the thread.
    forget_files(&dir);
    let start = Instant::now();
    isolator.cleanup(&c1).unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(
        reports.try_recv().is_err(),
        "no limitation without an oom kill"
    );
}

#[test]
fn v2_limits_usage_and_polled_oom() {
    let host = FakeCgroupfs::v2("/agent", "cpu memory");
    let root_dir = host.path().join("berth");
    write_files(
        &root_dir,
        &[("cgroup.subtree_control", ""), ("memory.swap.max", "max")],
    );
    let options = MemoryOptions {
        oom_poll_interval: Duration::from_millis(10),
    };
    let isolator = MemoryIsolator::new(host.root("/berth"), options).unwrap();
    assert_eq!(
        read(host.path().join("cgroup.subtree_control")),
        "+memory +pids"
    );
    assert_eq!(
        read(root_dir.join("cgroup.subtree_control")),
        "+memory +pids"
    );
    assert_eq!(isolator.describe()["mode"], json!("v2"));
    assert_eq!(isolator.describe()["swap_limited"], json!(true));

    let dir = root_dir.join("c1");
    write_files(
        &dir,
        &[
            ("cgroup.procs", ""),
            ("memory.max", "max"),
            ("memory.low", "0"),
            ("memory.swap.max", "max"),
            ("memory.current", "1048576\n"),
            ("memory.peak", "3145728\n"),
            (
                "memory.stat",
                "anon 8192\nfile 4096\nkernel 100\ninactive_file 48576\n",
            ),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\noom_group_kill 0\n",
            ),
        ],
    );
    let c1 = id("c1");
    isolator
        .prepare(&c1, &config("c1", Some(64 * MIB), Some(32 * MIB)))
        .unwrap();
    assert_eq!(read(dir.join("memory.max")), "67108864");
    assert_eq!(read(dir.join("memory.low")), "33554432");
    assert_eq!(read(dir.join("memory.swap.max")), "0");
    isolator.isolate(&c1, 77).unwrap();
    assert_eq!(read(dir.join("cgroup.procs")), "77");

    let usage = isolator.usage(&c1).unwrap();
    assert_eq!(usage["current_bytes"], json!(1048576));
    assert_eq!(usage["peak_bytes"], json!(3145728));
    assert_eq!(usage["rss_bytes"], json!(8192));
    assert_eq!(usage["cache_bytes"], json!(4096));
    // v2: memory.current minus inactive_file.
    assert_eq!(usage["working_set_bytes"], json!(1000000));
    assert_eq!(usage["limit_bytes"], json!(67108864));
    assert_eq!(usage["soft_limit_bytes"], json!(33554432));
    assert_eq!(usage["oom_kills"], json!(0));

    // A kernel before 5.19 has no memory.peak: the peak is the current usage.
    let old_kernel = root_dir.join("c0");
    write_files(
        &old_kernel,
        &[
            ("cgroup.procs", ""),
            ("memory.max", "max"),
            ("memory.low", "0"),
            ("memory.swap.max", "max"),
            ("memory.current", "2097152\n"),
            ("memory.stat", "anon 8192\nfile 4096\ninactive_file 0\n"),
            ("memory.events", "oom_kill 0\n"),
        ],
    );
    let c0 = id("c0");
    isolator.prepare(&c0, &config("c0", None, None)).unwrap();
    assert_eq!(isolator.usage(&c0).unwrap()["peak_bytes"], json!(2097152));
    assert_eq!(isolator.scrape(&c0).unwrap()["peak_bytes"], json!(2097152));

    fs::write(dir.join("memory.current"), (100 * MIB).to_string()).unwrap();
    let err = isolator
        .update(&c1, &memory(Some(80 * MIB), None))
        .unwrap_err();
    assert!(matches!(err, IsolatorError::Refused { .. }), "{err}");
    assert_eq!(read(dir.join("memory.max")), "67108864");

    let (reporter, reports) = channel_reporter();
    isolator.watch(&c1, reporter).unwrap();
    assert!(reports.recv_timeout(Duration::from_millis(100)).is_err());
    fs::write(dir.join("memory.peak"), (64 * MIB).to_string()).unwrap();
    fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n",
    )
    .unwrap();
    let limitation = reports
        .recv_timeout(Duration::from_secs(2))
        .expect("the watcher reports the oom kill");
    assert_eq!(limitation.reason(), "memory-limit");
    assert_eq!(
        limitation.message,
        "memory limit of 64.0 MiB reached; peak usage 64.0 MiB"
    );
    assert_eq!(isolator.exit_limitation(&c1).unwrap(), Some(limitation));

    forget_files(&dir);
    isolator.cleanup(&c1).unwrap();
    assert!(!dir.exists());
}

#[test]
fn recover_removes_orphans() {
    let (_host, root, isolator) = v1(MemoryOptions::default());
    fs::create_dir_all(root.join("orphan")).unwrap();
    fake_v1_container(&root.join("known"), true);
    let known = berth_isolator::RecoveredContainer {
        config: config("known", Some(64 * MIB), None),
        pid: None,
    };
    isolator.recover(&[known], &[id("orphan")]).unwrap();
    assert!(!root.join("orphan").exists());
    assert_eq!(
        isolator.usage(&id("known")).unwrap()["current_bytes"],
        json!(1048576)
    );
}
