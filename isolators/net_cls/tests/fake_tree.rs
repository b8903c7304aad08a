//! The net_cls isolator against fake cgroupfs trees: handle allocation
//! through the isolator, the files it writes, recovery from persisted
//! handles, and the refusal on cgroup v2.

use berth_isolator::TypedSection;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_cgroups::fake::{forget_files, id, read, FakeCgroupfs};
use berth_cgroups::CgroupRoot;
use berth_isolator::{ContainerConfig, Isolator, IsolatorError, RecoveredContainer};
use berth_isolator_net_cls::NetClsResources;
use berth_isolator_net_cls::{NetClsIsolator, NetClsOptions};
use serde_json::json;

const CLASSID: &str = "net_cls.classid";

struct Fake {
    host: FakeCgroupfs,
    /// The root's directory in the fake net_cls hierarchy.
    root_dir: PathBuf,
}

impl Fake {
    /// A v1 host with net_cls mounted in a temp dir, the agent in `/agent`.
    fn v1() -> Fake {
        let mut host = FakeCgroupfs::new();
        let root_dir = host.mount_v1("net_cls", "/agent").join("agent/berth");
        Fake { host, root_dir }
    }

    fn root(&self) -> Arc<CgroupRoot> {
        self.host.root("berth")
    }

    fn isolator(&self, min: u16, max: u16) -> NetClsIsolator {
        let options = NetClsOptions {
            secondary_min: min,
            secondary_max: max,
            mount_point: self.host.path().join("unused"),
            ..Default::default()
        };
        let isolator = NetClsIsolator::new(self.root(), options).unwrap();
        assert!(self.root_dir.is_dir(), "new() creates the root");
        isolator
    }

    /// Plays the kernel's part in mkdir: the control files come with it.
    fn container_files(&self, name: &str) -> PathBuf {
        let dir = self.root_dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(CLASSID), "0\n").unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        dir
    }

    /// A runtime dir for a container (the agent creates it before prepare).
    fn runtime_dir(&self, name: &str) -> PathBuf {
        let dir = self.host.path().join("run").join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config(&self, name: &str, handle: Option<u32>) -> ContainerConfig {
        let mut config = ContainerConfig::for_command(id(name), ["true"]);
        config.resources = NetClsResources {
            net_cls_handle: handle,
        }
        .into_resources();
        config.runtime_dir = self.runtime_dir(name);
        config
    }

    fn prepare(&self, isolator: &NetClsIsolator, name: &str, handle: Option<u32>) -> PathBuf {
        let dir = self.container_files(name);
        let config = self.config(name, handle);
        isolator.validate(&config).unwrap();
        isolator.prepare(&id(name), &config).unwrap();
        dir
    }
}

fn cleanup(isolator: &NetClsIsolator, dir: &Path, name: &str) {
    forget_files(dir);
    isolator.cleanup(&id(name)).unwrap();
    assert!(!dir.exists(), "cleanup removes {}", dir.display());
}

fn is_conflict(e: &IsolatorError) -> bool {
    matches!(e, IsolatorError::Conflict { .. })
}

#[test]
fn prepare_writes_the_classid_and_reports_it() {
    let fake = Fake::v1();
    let isolator = fake.isolator(1, 0xFFFF);
    let c1 = id("c1");
    let dir = fake.container_files("c1");
    let config = fake.config("c1", None);
    let contribution = isolator.prepare(&c1, &config).unwrap();
    assert_eq!(
        serde_json::Value::Object(contribution.linux_resources),
        json!({"network": {"classID": 0xAAAA_0001u32}})
    );
    assert_eq!(
        read(dir.join(CLASSID)),
        "2863267841",
        "decimal, as the kernel reads it"
    );
    let persisted: serde_json::Value =
        serde_json::from_str(&read(config.runtime_dir.join("net_cls.json"))).unwrap();
    assert_eq!(persisted["primary"], 0xAAAA);
    assert_eq!(persisted["secondary"], 1);

    isolator.isolate(&c1, 4242).unwrap();

    berth_cgroups::fake::assert_joinable_where_isolated(&isolator, &c1, 4242);
    assert_eq!(read(dir.join("cgroup.procs")), "4242");

    let status = isolator.status(&c1).unwrap();
    assert_eq!(status["classid"], "0xAAAA0001");
    assert_eq!(status["primary"], 0xAAAA);
    assert_eq!(status["secondary"], 1);
    assert_eq!(status["tc_class"], "aaaa:1");
    assert_eq!(isolator.usage(&c1).unwrap()["classid"], "0xAAAA0001");

    let describe = isolator.describe();
    assert_eq!(describe["mode"], "v1");
    assert_eq!(describe["primary"], "0xAAAA");
    assert_eq!(describe["secondary_min"], 1);
    assert_eq!(describe["secondary_max"], 0xFFFF);
    assert_eq!(describe["classid_range"], "0xAAAA0001-0xAAAAFFFF");
    assert_eq!(describe["handles_free"], 0xFFFE);
    assert_eq!(describe["mounted_by_agent"], false);
    assert_eq!(
        describe["mount_point"],
        fake.host.path().join("net_cls").display().to_string()
    );

    // The next container gets the next handle.
    let dir2 = fake.prepare(&isolator, "c2", None);
    assert_eq!(read(dir2.join(CLASSID)), (0xAAAA_0002u32).to_string());

    cleanup(&isolator, &dir, "c1");
    assert!(!config.runtime_dir.join("net_cls.json").exists());
    assert!(matches!(
        isolator.status(&c1),
        Err(IsolatorError::UnknownContainer { .. })
    ));
    assert_eq!(isolator.describe()["handles_free"], 0xFFFE);
    // Freed: the lowest handle is given again.
    let dir3 = fake.prepare(&isolator, "c3", None);
    assert_eq!(read(dir3.join(CLASSID)), (0xAAAA_0001u32).to_string());
    // Unknown ids are tolerated, twice as well.
    isolator.cleanup(&id("never")).unwrap();
    isolator.cleanup(&c1).unwrap();
}

#[test]
fn a_specific_handle_conflicts_while_held_and_is_reused_after_cleanup() {
    let fake = Fake::v1();
    let isolator = fake.isolator(1, 100);
    let dir = fake.prepare(&isolator, "a", Some(42));
    assert_eq!(read(dir.join(CLASSID)), (0xAAAA_002Au32).to_string());
    assert_eq!(isolator.status(&id("a")).unwrap()["classid"], "0xAAAA002A");

    // validate sees it taken (409), and so does prepare (a race past validate).
    let other = fake.config("b", Some(42));
    let err = isolator.validate(&other).unwrap_err();
    assert!(is_conflict(&err), "{err}");
    assert!(err.to_string().contains("container a"), "{err}");
    fake.container_files("b");
    let err = isolator.prepare(&id("b"), &other).unwrap_err();
    assert!(is_conflict(&err), "{err}");
    assert_eq!(
        read(fake.root_dir.join("a").join(CLASSID)),
        (0xAAAA_002Au32).to_string(),
        "the holder is untouched"
    );
    assert!(isolator.status(&id("b")).is_err(), "nothing held for b");

    // Asking the same handle in an update is fine; another one is refused.
    isolator
        .update(
            &id("a"),
            &NetClsResources {
                net_cls_handle: Some(42),
            }
            .into_resources(),
        )
        .unwrap();
    let err = isolator
        .update(
            &id("a"),
            &NetClsResources {
                net_cls_handle: Some(7),
            }
            .into_resources(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, IsolatorError::InvalidConfig { field, .. } if field == "resources.net_cls_handle"),
        "{err}"
    );

    cleanup(&isolator, &dir, "a");
    let dir_b = fake.prepare(&isolator, "b", Some(42));
    assert_eq!(read(dir_b.join(CLASSID)), (0xAAAA_002Au32).to_string());
}

#[test]
fn out_of_range_is_invalid_and_touches_nothing() {
    let fake = Fake::v1();
    let isolator = fake.isolator(10, 20);
    for bad in [0, 9, 21, 70000] {
        let config = fake.config("x", Some(bad));
        let err = isolator.validate(&config).unwrap_err();
        assert!(
            matches!(&err, IsolatorError::InvalidConfig { field, message }
                if field == "resources.net_cls_handle" && message.contains("10..=20")),
            "{err}"
        );
        let err = isolator.prepare(&id("x"), &config).unwrap_err();
        assert!(matches!(err, IsolatorError::InvalidConfig { .. }), "{err}");
    }
    assert!(!fake.root_dir.join("x").exists());
    assert_eq!(isolator.describe()["handles_free"], 11);
}

#[test]
fn an_exhausted_range_fails_with_a_conflict_naming_it() {
    let fake = Fake::v1();
    let isolator = fake.isolator(1, 2);
    let dir1 = fake.prepare(&isolator, "c1", None);
    fake.prepare(&isolator, "c2", None);
    assert_eq!(isolator.describe()["handles_free"], 0);
    let config = fake.config("c3", None);
    let err = isolator.validate(&config).unwrap_err();
    assert!(is_conflict(&err), "{err}");
    assert_eq!(
        err.to_string(),
        "no free net_cls handle: all 2 secondary handles 1..=2 under primary 0xAAAA are in use"
    );
    assert!(is_conflict(
        &isolator.prepare(&id("c3"), &config).unwrap_err()
    ));
    assert!(!fake.root_dir.join("c3").exists(), "nothing created");
    cleanup(&isolator, &dir1, "c1");
    let dir3 = fake.prepare(&isolator, "c3", None);
    assert_eq!(read(dir3.join(CLASSID)), (0xAAAA_0001u32).to_string());
}

#[test]
fn a_failed_prepare_frees_the_handle_and_removes_the_cgroup() {
    let fake = Fake::v1();
    let isolator = fake.isolator(1, 10);
    // No control file: the write fails as on a kernel without net_cls.classid.
    let config = fake.config("broken", Some(5));
    let err = isolator.prepare(&id("broken"), &config).unwrap_err();
    assert!(err.to_string().contains(CLASSID), "{err}");
    assert!(!fake.root_dir.join("broken").exists());
    assert!(!config.runtime_dir.join("net_cls.json").exists());
    assert_eq!(isolator.describe()["handles_free"], 10);
    fake.prepare(&isolator, "fixed", Some(5));
}

#[test]
fn recovery_reserves_persisted_handles_and_removes_the_rest() {
    let fake = Fake::v1();
    let first = fake.isolator(1, 10);
    let dir_a = fake.prepare(&first, "a", Some(3));
    let dir_b = fake.prepare(&first, "b", None);
    let dir_orphan = fake.prepare(&first, "orphan", None);
    // A stray: a cgroup of a container the agent lost track of.
    let stray = fake.root_dir.join("stray");
    fs::create_dir_all(&stray).unwrap();
    // "b" crashed after writing its cgroup but before persisting the handle.
    fs::remove_file(fake.runtime_dir("b").join("net_cls.json")).unwrap();
    drop(first);

    // The agent restarts: a new isolator, empty in memory.
    let second = fake.isolator(1, 10);
    let recovered = |name: &str| RecoveredContainer {
        config: fake.config(name, None),
        pid: Some(1),
    };
    // "plain" never used net_cls: nothing is reserved for it.
    forget_files(&dir_orphan);
    second
        .recover(
            &[recovered("a"), recovered("b"), recovered("plain")],
            &[id("orphan")],
        )
        .unwrap();
    assert_eq!(second.status(&id("a")).unwrap()["classid"], "0xAAAA0003");
    assert_eq!(second.status(&id("b")).unwrap()["classid"], "0xAAAA0001");
    assert!(second.status(&id("plain")).is_err());
    assert!(!dir_orphan.exists(), "orphan cgroup removed");
    assert!(!stray.exists(), "stray cgroup removed");
    assert!(dir_a.exists() && dir_b.exists());

    let err = second.validate(&fake.config("c", Some(3))).unwrap_err();
    assert!(is_conflict(&err), "{err}");
    let err = second.validate(&fake.config("c", Some(1))).unwrap_err();
    assert!(is_conflict(&err), "{err}");
    // The orphan's handle (2) is free again, and the lowest.
    let dir_c = fake.prepare(&second, "c", None);
    assert_eq!(read(dir_c.join(CLASSID)), (0xAAAA_0002u32).to_string());
    assert_eq!(second.describe()["handles_free"], 7);

    cleanup(&second, &dir_a, "a");
    assert!(second.validate(&fake.config("d", Some(3))).is_ok());
}

#[test]
fn a_recovered_classid_under_another_primary_is_kept_outside_the_pool() {
    let fake = Fake::v1();
    let old = NetClsIsolator::new(
        fake.root(),
        NetClsOptions {
            primary: 0x10,
            secondary_min: 1,
            secondary_max: 10,
            mount_point: fake.host.path().join("unused"),
        },
    )
    .unwrap();
    let dir = fake.prepare(&old, "a", Some(1));
    drop(old);
    let new = fake.isolator(1, 10);
    new.recover(
        &[RecoveredContainer {
            config: fake.config("a", None),
            pid: Some(1),
        }],
        &[],
    )
    .unwrap();
    assert_eq!(new.status(&id("a")).unwrap()["classid"], "0x00100001");
    assert_eq!(new.describe()["handles_free"], 10);
    cleanup(&new, &dir, "a");
    assert_eq!(new.describe()["handles_free"], 10);
}

#[test]
fn cgroup_v2_is_refused_naming_the_missing_controller() {
    let host = FakeCgroupfs::v2("/", "cpu io memory pids");
    let options = NetClsOptions {
        mount_point: host.path().join("net_cls"),
        ..Default::default()
    };
    let err = NetClsIsolator::new(host.root("berth"), options).unwrap_err();
    assert!(matches!(err, IsolatorError::Unsupported { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("net_cls is not available on cgroup v2"),
        "{message}"
    );
    assert!(message.contains("socket cgroupv2"), "{message}");
    assert!(!host.path().join("berth").exists(), "no root created");
    assert!(!host.path().join("net_cls").exists(), "nothing mounted");
}

#[test]
fn bad_handle_settings_are_refused() {
    let fake = Fake::v1();
    for (primary, min, max) in [(0, 1, 10), (0xAAAA, 0, 10), (0xAAAA, 5, 4)] {
        let options = NetClsOptions {
            primary,
            secondary_min: min,
            secondary_max: max,
            mount_point: fake.host.path().join("unused"),
        };
        let err = NetClsIsolator::new(fake.root(), options).unwrap_err();
        assert!(err.to_string().contains("invalid net_cls handles"), "{err}");
    }
}
