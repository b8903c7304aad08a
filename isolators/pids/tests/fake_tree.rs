//! The pids isolator against fake cgroupfs trees: the files it writes, the
//! usage it parses, cleanup, recovery and unknown ids, on v1 and v2.

use berth_isolator::TypedSection;
use std::fs;
use std::path::PathBuf;

use berth_cgroups::fake::{forget_files, id, read, write_files, FakeCgroupfs};
use berth_isolator::{ContainerConfig, Isolator, IsolatorError, RecoveredContainer, Resources};
use berth_isolator_pids::PidsResources;
use berth_isolator_pids::{PidsIsolator, PidsOptions};
use serde_json::json;

fn config(name: &str, limit: Option<u64>) -> ContainerConfig {
    let mut config = ContainerConfig::for_command(id(name), ["true"]);
    config.resources = PidsResources { pids_limit: limit }.into_resources();
    config
}

fn limit(n: u64) -> Resources {
    PidsResources {
        pids_limit: Some(n),
    }
    .into_resources()
}

/// What mkdir of a pids cgroup brings.
const PIDS_FILES: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("pids.max", "max\n"),
    ("pids.current", "3\n"),
    ("pids.events", "max 2\n"),
];

struct V1 {
    _host: FakeCgroupfs,
    root: PathBuf,
    isolator: PidsIsolator,
}

fn v1(options: PidsOptions) -> V1 {
    let mut host = FakeCgroupfs::new();
    let mount = host.mount_v1("pids", "/agent");
    let isolator = PidsIsolator::new(host.root("berth"), options).unwrap();
    let root = mount.join("agent/berth");
    assert!(root.is_dir(), "new() creates the root");
    V1 {
        _host: host,
        root,
        isolator,
    }
}

#[test]
fn v1_prepare_isolate_usage_update_cleanup() {
    let t = v1(PidsOptions::default());
    let dir = t.root.join("c1");
    write_files(&dir, PIDS_FILES);
    let c1 = id("c1");
    let contribution = t.isolator.prepare(&c1, &config("c1", Some(100))).unwrap();
    assert_eq!(
        serde_json::Value::Object(contribution.linux_resources),
        json!({"pids": {"limit": 100}})
    );
    assert_eq!(read(dir.join("pids.max")), "100");
    t.isolator.isolate(&c1, 4242).unwrap();
    berth_cgroups::fake::assert_joinable_where_isolated(&t.isolator, &c1, 4242);
    assert_eq!(read(dir.join("cgroup.procs")), "4242");

    let usage = t.isolator.usage(&c1).unwrap();
    assert_eq!(
        serde_json::Value::Object(usage),
        json!({"current": 3, "limit": 100, "limit_hits": 2})
    );

    t.isolator.update(&c1, &limit(10)).unwrap();
    assert_eq!(read(dir.join("pids.max")), "10");
    assert_eq!(t.isolator.usage(&c1).unwrap()["limit"], 10);
    // No pids_limit in an update: the limit stays.
    t.isolator.update(&c1, &Resources::default()).unwrap();
    assert_eq!(read(dir.join("pids.max")), "10");
    // Invalid values are refused before anything is written.
    for bad in [0, 1 << 40] {
        let err = t.isolator.update(&c1, &limit(bad)).unwrap_err();
        assert!(
            matches!(&err, IsolatorError::InvalidConfig { field, .. } if field == "resources.pids_limit"),
            "{err}"
        );
    }
    assert_eq!(read(dir.join("pids.max")), "10");
    // A write the kernel refuses is a refused update naming the file.
    fs::remove_file(dir.join("pids.max")).unwrap();
    let err = t.isolator.update(&c1, &limit(20)).unwrap_err();
    assert!(matches!(err, IsolatorError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("pids.max"), "{err}");
    assert_eq!(t.isolator.usage(&c1).unwrap()["limit"], 10);
    write_files(&dir, &[("pids.max", "10")]);

    for unknown in [
        t.isolator.update(&id("nope"), &limit(1)).unwrap_err(),
        t.isolator.usage(&id("nope")).unwrap_err(),
        t.isolator.isolate(&id("nope"), 1).unwrap_err(),
    ] {
        assert!(
            matches!(unknown, IsolatorError::UnknownContainer { .. }),
            "{unknown}"
        );
    }

    forget_files(&dir);
    t.isolator.cleanup(&c1).unwrap();
    assert!(!dir.exists());
    t.isolator.cleanup(&c1).unwrap();
    t.isolator.cleanup(&id("never-seen")).unwrap();
    assert!(matches!(
        t.isolator.usage(&c1),
        Err(IsolatorError::UnknownContainer { .. })
    ));
}

#[test]
fn the_default_limit_applies_and_unlimited_needs_the_option() {
    let t = v1(PidsOptions::default());
    write_files(&t.root.join("c1"), PIDS_FILES);
    t.isolator.prepare(&id("c1"), &config("c1", None)).unwrap();
    assert_eq!(read(t.root.join("c1/pids.max")), "4096");

    // No limit is refused before anything is created.
    let err = t.isolator.validate(&config("c2", Some(0))).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid resources.pids_limit"),
        "{err}"
    );
    assert!(t
        .isolator
        .prepare(&id("c2"), &config("c2", Some(0)))
        .is_err());
    assert!(!t.root.join("c2").exists());

    let open = v1(PidsOptions {
        default_limit: 0,
        allow_unlimited: true,
    });
    write_files(&open.root.join("c3"), PIDS_FILES);
    let contribution = open
        .isolator
        .prepare(&id("c3"), &config("c3", None))
        .unwrap();
    assert_eq!(contribution.linux_resources["pids"], json!({"limit": -1}));
    assert_eq!(read(open.root.join("c3/pids.max")), "max");
    assert_eq!(open.isolator.usage(&id("c3")).unwrap()["limit"], "max");
    assert_eq!(open.isolator.describe()["default_limit"], 0);
}

#[test]
fn a_failed_prepare_removes_what_it_created() {
    let t = v1(PidsOptions::default());
    // No pids.max in the new directory: the write fails, the dir goes.
    let err = t
        .isolator
        .prepare(&id("c1"), &config("c1", Some(5)))
        .unwrap_err();
    assert!(err.to_string().contains("pids.max"), "{err}");
    assert!(!t.root.join("c1").exists());
}

#[test]
fn recover_reads_the_limit_and_removes_orphans() {
    let t = v1(PidsOptions::default());
    fs::create_dir_all(t.root.join("orphan")).unwrap();
    write_files(&t.root.join("known"), PIDS_FILES);
    write_files(&t.root.join("known"), &[("pids.max", "77\n")]);
    let known = RecoveredContainer {
        config: config("known", Some(77)),
        pid: Some(1),
    };
    t.isolator.recover(&[known], &[id("orphan")]).unwrap();
    assert!(!t.root.join("orphan").exists());
    assert!(t.root.join("known").exists());
    assert_eq!(t.isolator.usage(&id("known")).unwrap()["limit"], 77);
}

#[test]
fn v2_enables_pids_and_writes_pids_max() {
    let host = FakeCgroupfs::v2("/agent", "cpu memory pids");
    let own = host.path().join("agent");
    write_files(&own.join("berth"), &[("cgroup.subtree_control", "")]);
    let isolator = PidsIsolator::new(host.root("berth"), PidsOptions::default()).unwrap();
    assert_eq!(read(own.join("cgroup.subtree_control")), "+pids");
    assert_eq!(read(own.join("berth/cgroup.subtree_control")), "+pids");
    assert_eq!(isolator.describe()["mode"], "v2");
    let dir = own.join("berth/c1");
    write_files(&dir, PIDS_FILES);
    let c1 = id("c1");
    isolator.prepare(&c1, &config("c1", Some(64))).unwrap();
    assert_eq!(read(dir.join("pids.max")), "64");
    isolator.isolate(&c1, 9).unwrap();
    assert_eq!(read(dir.join("cgroup.procs")), "9");
    assert_eq!(isolator.usage(&c1).unwrap()["current"], 3);
    forget_files(&dir);
    isolator.cleanup(&c1).unwrap();
    assert!(!dir.exists());
}

#[test]
fn v2_without_pids_offered_fails_at_start() {
    let host = FakeCgroupfs::v2("/agent", "cpu memory");
    let err = PidsIsolator::new(host.root("berth"), PidsOptions::default()).unwrap_err();
    assert!(err.to_string().contains("pids"), "{err}");
}
