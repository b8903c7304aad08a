//! The cpu isolator against fake cgroupfs trees: the files it writes and
//! the usage it parses, on v1 (separate and co-mounted) and v2.

use berth_isolator::TypedSection;
use std::fs;
use std::path::PathBuf;

use berth_cgroups::fake::{forget_files, id, read, write_files, FakeCgroupfs};
use berth_isolator::{ContainerConfig, Isolator, IsolatorError, Resources};
use berth_isolator_cpu::CpuResources;
use berth_isolator_cpu::{CpuIsolator, CpuOptions};
use serde_json::json;

fn config(name: &str, cpus: Option<f64>) -> ContainerConfig {
    let mut config = ContainerConfig::for_command(id(name), ["true"]);
    config.resources = CpuResources { cpus }.into_resources();
    config
}

fn cpus(cpus: f64) -> Resources {
    CpuResources { cpus: Some(cpus) }.into_resources()
}

const CPU_V1: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cpu.shares", "1024"),
    ("cpu.cfs_period_us", "100000"),
    ("cpu.cfs_quota_us", "-1"),
    (
        "cpu.stat",
        "nr_periods 20\nnr_throttled 5\nthrottled_time 1500000000\n",
    ),
];
const CPUACCT_V1: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cpuacct.usage", "2500000000\n"),
    ("cpuacct.stat", "user 150\nsystem 50\n"),
];

struct V1 {
    _host: FakeCgroupfs,
    cpu: PathBuf,
    cpuacct: PathBuf,
    isolator: CpuIsolator,
}

fn v1(comounted: bool, cfs_files: bool, options: CpuOptions) -> V1 {
    let mut host = FakeCgroupfs::new();
    let (cpu, cpuacct) = if comounted {
        let dir = host.mount_v1("cpu,cpuacct", "/");
        (dir.clone(), dir)
    } else {
        (host.mount_v1("cpu", "/"), host.mount_v1("cpuacct", "/"))
    };
    if cfs_files {
        write_files(&cpu, &[("cpu.cfs_quota_us", "-1")]);
    }
    let isolator = CpuIsolator::new(host.root("berth"), options).unwrap();
    let (cpu, cpuacct) = (cpu.join("berth"), cpuacct.join("berth"));
    assert!(cpu.is_dir() && cpuacct.is_dir(), "new() creates the root");
    V1 {
        _host: host,
        cpu,
        cpuacct,
        isolator,
    }
}

/// What mkdir of container `name` would create in the kernel.
fn fake_v1_container(t: &V1, name: &str, cfs_files: bool) {
    let cpu: Vec<_> = CPU_V1
        .iter()
        .copied()
        .filter(|(f, _)| cfs_files || !f.starts_with("cpu.cfs"))
        .collect();
    write_files(&t.cpu.join(name), &cpu);
    write_files(&t.cpuacct.join(name), CPUACCT_V1);
    if t.cpu == t.cpuacct {
        write_files(&t.cpu.join(name), &cpu);
    }
}

#[test]
fn v1_prepare_isolate_usage_update_cleanup() {
    let t = v1(false, true, CpuOptions::default());
    fake_v1_container(&t, "c1", true);
    let c1 = id("c1");
    let contribution = t.isolator.prepare(&c1, &config("c1", Some(0.5))).unwrap();
    assert_eq!(
        serde_json::Value::Object(contribution.linux_resources),
        json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000}})
    );
    let dir = t.cpu.join("c1");
    assert_eq!(read(dir.join("cpu.shares")), "512");
    assert_eq!(read(dir.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(dir.join("cpu.cfs_quota_us")), "50000");

    t.isolator.isolate(&c1, 4242).unwrap();
    assert_eq!(read(dir.join("cgroup.procs")), "4242");
    assert_eq!(read(t.cpuacct.join("c1/cgroup.procs")), "4242");
    // Where the process may move itself instead: the same two dirs.
    assert_eq!(
        t.isolator.joinable_cgroups(&c1).unwrap(),
        [dir.clone(), t.cpuacct.join("c1")]
    );

    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let usage = t.isolator.usage(&c1).unwrap();
    assert_eq!(usage["user_seconds"], json!(150.0 / hz));
    assert_eq!(usage["system_seconds"], json!(50.0 / hz));
    assert_eq!(usage["usage_seconds"], json!(2.5));
    assert_eq!(usage["nr_periods"], json!(20));
    assert_eq!(usage["nr_throttled"], json!(5));
    assert_eq!(usage["throttled_seconds"], json!(1.5));
    assert_eq!(usage["cpus"], json!(0.5));
    assert_eq!(usage["shares"], json!(512));
    assert_eq!(usage["quota_us"], json!(50000));
    assert_eq!(usage["period_us"], json!(100000));

    t.isolator.update(&c1, &cpus(1.5)).unwrap();
    assert_eq!(read(dir.join("cpu.shares")), "1536");
    assert_eq!(read(dir.join("cpu.cfs_quota_us")), "150000");
    assert_eq!(t.isolator.usage(&c1).unwrap()["cpus"], json!(1.5));

    // Invalid values are refused before anything is written.
    for bad in [f64::NAN, 0.0, -2.0, 5000.0] {
        let err = t.isolator.update(&c1, &cpus(bad)).unwrap_err();
        assert!(
            matches!(&err, IsolatorError::InvalidConfig { field, .. } if field == "resources.cpus"),
            "{err}"
        );
    }
    assert_eq!(read(dir.join("cpu.shares")), "1536");
    assert_eq!(read(dir.join("cpu.cfs_quota_us")), "150000");
    // No cpus in an update: the limits stay.
    t.isolator.update(&c1, &Resources::default()).unwrap();
    assert_eq!(read(dir.join("cpu.cfs_quota_us")), "150000");

    // A value the kernel refuses (here: a period file that cannot be
    // written) is a refused update, and the old shares are put back.
    fs::remove_file(dir.join("cpu.cfs_period_us")).unwrap();
    fs::create_dir(dir.join("cpu.cfs_period_us")).unwrap();
    let err = t.isolator.update(&c1, &cpus(1.0)).unwrap_err();
    assert!(matches!(err, IsolatorError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("cpu.cfs_period_us"), "{err}");
    assert_eq!(read(dir.join("cpu.shares")), "1536");
    assert_eq!(read(dir.join("cpu.cfs_quota_us")), "150000");
    fs::remove_dir(dir.join("cpu.cfs_period_us")).unwrap();

    assert!(matches!(
        t.isolator.update(&id("nope"), &cpus(1.0)),
        Err(IsolatorError::UnknownContainer { .. })
    ));

    forget_files(&dir);
    forget_files(&t.cpuacct.join("c1"));
    t.isolator.cleanup(&c1).unwrap();
    assert!(!dir.exists() && !t.cpuacct.join("c1").exists());
    t.isolator.cleanup(&c1).unwrap();
    t.isolator.cleanup(&id("never-seen")).unwrap();
    assert!(matches!(
        t.isolator.usage(&c1),
        Err(IsolatorError::UnknownContainer { .. })
    ));
}

#[test]
fn v1_comounted_without_cfs_quota_writes_only_shares() {
    let t = v1(true, false, CpuOptions { cfs_quota: false });
    assert_eq!(t.isolator.describe()["cfs_quota_supported"], json!(false));
    assert_eq!(t.isolator.describe()["mode"], json!("v1"));
    fake_v1_container(&t, "c1", false);
    let contribution = t
        .isolator
        .prepare(&id("c1"), &config("c1", Some(2.0)))
        .unwrap();
    assert_eq!(contribution.linux_resources["cpu"], json!({"shares": 2048}));
    assert_eq!(read(t.cpu.join("c1/cpu.shares")), "2048");
    assert!(!t.cpu.join("c1/cpu.cfs_quota_us").exists());
    t.isolator.isolate(&id("c1"), 7).unwrap();
    assert_eq!(read(t.cpu.join("c1/cgroup.procs")), "7");
    // Co-mounted: one dir to join, as one to write.
    assert_eq!(
        t.isolator.joinable_cgroups(&id("c1")).unwrap(),
        [t.cpu.join("c1")]
    );
}

#[test]
fn cfs_quota_asked_but_missing_is_unsupported_and_undone() {
    let t = v1(false, false, CpuOptions::default());
    // The container's directories do not exist yet, so the undo can remove them.
    let err = t
        .isolator
        .prepare(&id("c1"), &config("c1", Some(1.0)))
        .unwrap_err();
    // cpu.shares does not exist either: the first write names it.
    assert!(err.to_string().contains("cpu.shares"), "{err}");
    assert!(!t.cpu.join("c1").exists() && !t.cpuacct.join("c1").exists());

    write_files(&t.cpu.join("c2"), &[("cpu.shares", "1024")]);
    let err = t
        .isolator
        .prepare(&id("c2"), &config("c2", Some(1.0)))
        .unwrap_err();
    assert!(matches!(err, IsolatorError::Unsupported { .. }), "{err}");
    assert!(!t.cpuacct.join("c2").exists(), "partial work undone");
}

#[test]
fn no_cpus_still_creates_the_cgroup_without_limits() {
    let t = v1(false, true, CpuOptions::default());
    fake_v1_container(&t, "c1", true);
    let contribution = t.isolator.prepare(&id("c1"), &config("c1", None)).unwrap();
    assert!(contribution.linux_resources.is_empty());
    assert_eq!(read(t.cpu.join("c1/cpu.shares")), "1024");
    assert_eq!(read(t.cpu.join("c1/cpu.cfs_quota_us")), "-1");
    let usage = t.isolator.usage(&id("c1")).unwrap();
    assert_eq!(usage["usage_seconds"], json!(2.5));
    assert_eq!(usage["shares"], json!(1024), "the default weight");
    assert!(usage.get("cpus").is_none());
}

#[test]
fn invalid_cpus_are_refused_before_touching_the_host() {
    let t = v1(false, true, CpuOptions::default());
    let err = t.isolator.validate(&config("c1", Some(-1.0))).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid resources.cpus"),
        "{err}"
    );
    assert!(t
        .isolator
        .prepare(&id("c1"), &config("c1", Some(f64::INFINITY)))
        .is_err());
    assert!(!t.cpu.join("c1").exists());
}

#[test]
fn recover_removes_orphans_and_keeps_known_containers() {
    let t = v1(false, true, CpuOptions::default());
    fs::create_dir_all(t.cpu.join("orphan")).unwrap();
    fs::create_dir_all(t.cpuacct.join("orphan")).unwrap();
    fake_v1_container(&t, "known", true);
    let known = berth_isolator::RecoveredContainer {
        config: config("known", Some(0.25)),
        pid: Some(1),
    };
    t.isolator.recover(&[known], &[id("orphan")]).unwrap();
    assert!(!t.cpu.join("orphan").exists() && !t.cpuacct.join("orphan").exists());
    assert_eq!(t.isolator.usage(&id("known")).unwrap()["cpus"], json!(0.25));
}

#[test]
fn v2_writes_weight_and_max() {
    let host = FakeCgroupfs::v2("/agent", "cpu memory");
    let own = host.path().join("agent");
    write_files(
        &own.join("berth"),
        &[("cgroup.subtree_control", ""), ("cpu.max", "max 100000")],
    );
    let isolator = CpuIsolator::new(host.root("berth"), CpuOptions::default()).unwrap();
    assert_eq!(read(own.join("cgroup.subtree_control")), "+cpu");
    assert_eq!(read(own.join("berth/cgroup.subtree_control")), "+cpu");
    assert_eq!(isolator.describe()["mode"], json!("v2"));
    assert_eq!(isolator.describe()["cfs_quota_supported"], json!(true));

    let dir = own.join("berth/c1");
    write_files(
        &dir,
        &[
            ("cgroup.procs", ""),
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            (
                "cpu.stat",
                "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 40\nnr_throttled 10\nthrottled_usec 500000\nnr_bursts 0\nburst_usec 0\n",
            ),
        ],
    );
    let c1 = id("c1");
    let contribution = isolator.prepare(&c1, &config("c1", Some(0.5))).unwrap();
    assert_eq!(
        contribution.linux_resources["cpu"],
        json!({"shares": 512, "quota": 50000, "period": 100000})
    );
    assert_eq!(read(dir.join("cpu.weight")), "59");
    assert_eq!(read(dir.join("cpu.max")), "50000 100000");
    isolator.isolate(&c1, 99).unwrap();
    assert_eq!(read(dir.join("cgroup.procs")), "99");
    assert_eq!(
        isolator.joinable_cgroups(&c1).unwrap(),
        std::slice::from_ref(&dir)
    );

    let usage = isolator.usage(&c1).unwrap();
    assert_eq!(usage["usage_seconds"], json!(3.0));
    assert_eq!(usage["user_seconds"], json!(2.0));
    assert_eq!(usage["system_seconds"], json!(1.0));
    assert_eq!(usage["nr_periods"], json!(40));
    assert_eq!(usage["nr_throttled"], json!(10));
    assert_eq!(usage["throttled_seconds"], json!(0.5));

    isolator.update(&c1, &cpus(1.0)).unwrap();
    assert_eq!(read(dir.join("cpu.weight")), "100");
    assert_eq!(read(dir.join("cpu.max")), "100000 100000");
    assert!(isolator.update(&c1, &cpus(f64::NAN)).is_err());
    assert_eq!(read(dir.join("cpu.max")), "100000 100000");

    forget_files(&dir);
    isolator.cleanup(&c1).unwrap();
    assert!(!dir.exists());
}
