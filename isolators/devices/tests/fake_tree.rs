//! The devices isolator against fake cgroupfs trees: the files it writes,
//! the contribution, cleanup, recovery and unknown ids.

use berth_isolator::TypedSection;
use std::fs;
use std::path::PathBuf;

use berth_cgroups::fake::{forget_files, id, read, write_files, FakeCgroupfs};
use berth_isolator::{ContainerConfig, Isolator, IsolatorError, RecoveredContainer, Resources};
use berth_isolator_devices::DevicesResources;
use berth_isolator_devices::{default_rules, DeviceMapping, DeviceRule, DevicesIsolator};
use serde_json::json;

fn config(name: &str, devices: Vec<DeviceMapping>) -> ContainerConfig {
    let mut config = ContainerConfig::for_command(id(name), ["true"]);
    config.resources = DevicesResources { devices }.into_resources();
    config
}

fn default_lines() -> Vec<String> {
    default_rules().iter().map(DeviceRule::v1_line).collect()
}

struct V1 {
    _host: FakeCgroupfs,
    root: PathBuf,
    isolator: DevicesIsolator,
}

fn v1() -> V1 {
    let mut host = FakeCgroupfs::new();
    let mount = host.mount_v1("devices", "/");
    let isolator = DevicesIsolator::new(host.root("berth")).unwrap();
    let root = mount.join("berth");
    assert!(root.is_dir(), "new() creates the root");
    V1 {
        _host: host,
        root,
        isolator,
    }
}

#[test]
fn v1_denies_all_then_allows_each_rule() {
    let t = v1();
    let dir = t.root.join("c1");
    write_files(
        &dir,
        &[
            ("cgroup.procs", ""),
            ("devices.deny", ""),
            ("devices.allow", ""),
        ],
    );
    let c1 = id("c1");
    let passed = DeviceMapping {
        host: "/dev/null".into(),
        container: Some("/dev/other-null".into()),
        access: Some("r".into()),
    };
    let contribution = t
        .isolator
        .prepare(&c1, &config("c1", vec![passed]))
        .unwrap();
    // A plain file keeps every write through its one open, in order: the
    // default rules, then the passed device's (the real-kernel test reads
    // the whole list back).
    assert_eq!(read(dir.join("devices.deny")), "a");
    let mut expected = default_lines();
    expected.push("c 1:3 r".into());
    assert_eq!(read(dir.join("devices.allow")), expected.concat());

    // The bundle gets the same rules after a deny-all, and the node.
    let rules = contribution.linux_resources["devices"].as_array().unwrap();
    assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}));
    assert_eq!(rules.len(), expected.len() + 1);
    assert_eq!(
        rules.last().unwrap(),
        &json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"})
    );
    assert_eq!(
        serde_json::to_value(&contribution.devices).unwrap(),
        json!([{"path": "/dev/other-null", "type": "c", "major": 1, "minor": 3,
                "fileMode": 0o666, "uid": 0, "gid": 0}])
    );

    t.isolator.isolate(&c1, 4242).unwrap();

    berth_cgroups::fake::assert_joinable_where_isolated(&t.isolator, &c1, 4242);
    assert_eq!(read(dir.join("cgroup.procs")), "4242");
    let status = t.isolator.status(&c1).unwrap();
    assert_eq!(status["allow"].as_array().unwrap().len(), expected.len());

    // Devices differing from the launch's are refused.
    let err = t.isolator.update(&c1, &Resources::default()).unwrap_err();
    assert!(
        matches!(&err, IsolatorError::InvalidConfig { field, .. } if field == "resources.devices"),
        "{err}"
    );
    forget_files(&dir);
    t.isolator.cleanup(&c1).unwrap();
    assert!(!dir.exists());
    t.isolator.cleanup(&c1).unwrap();
    t.isolator.cleanup(&id("never-seen")).unwrap();
    for unknown in [
        t.isolator.isolate(&c1, 1).unwrap_err(),
        t.isolator.status(&c1).unwrap_err(),
        t.isolator.update(&c1, &Resources::default()).unwrap_err(),
    ] {
        assert!(
            matches!(unknown, IsolatorError::UnknownContainer { .. }),
            "{unknown}"
        );
    }
}

#[test]
fn updates_keep_the_devices_or_are_refused() {
    let t = v1();
    let dir = t.root.join("c1");
    write_files(
        &dir,
        &[
            ("cgroup.procs", ""),
            ("devices.deny", ""),
            ("devices.allow", ""),
        ],
    );
    let c1 = id("c1");
    t.isolator.prepare(&c1, &config("c1", vec![])).unwrap();
    t.isolator.update(&c1, &Resources::default()).unwrap();
    let more = DevicesResources {
        devices: vec![DeviceMapping {
            host: "/dev/null".into(),
            container: Some("/dev/n2".into()),
            access: None,
        }],
    }
    .into_resources();
    let err = t.isolator.update(&c1, &more).unwrap_err();
    assert!(
        matches!(&err, IsolatorError::InvalidConfig { field, .. } if field == "resources.devices"),
        "{err}"
    );
}

#[test]
fn a_bad_device_is_refused_before_anything_is_created() {
    let t = v1();
    let bad = config(
        "c1",
        vec![DeviceMapping {
            host: "/etc/hostname".into(),
            container: None,
            access: None,
        }],
    );
    let err = t.isolator.validate(&bad).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid resources.devices[0].host"),
        "{err}"
    );
    assert!(t.isolator.prepare(&id("c1"), &bad).is_err());
    assert!(!t.root.join("c1").exists());
}

#[test]
fn a_failed_write_removes_the_cgroup() {
    let t = v1();
    // No devices.deny in the new directory: the first write fails.
    let err = t
        .isolator
        .prepare(&id("c1"), &config("c1", vec![]))
        .unwrap_err();
    assert!(err.to_string().contains("devices.deny"), "{err}");
    assert!(!t.root.join("c1").exists());
}

#[test]
fn recover_keeps_known_containers_and_removes_orphans() {
    let t = v1();
    fs::create_dir_all(t.root.join("orphan")).unwrap();
    fs::create_dir_all(t.root.join("known")).unwrap();
    let known = RecoveredContainer {
        config: config("known", vec![]),
        pid: Some(1),
    };
    t.isolator.recover(&[known], &[id("orphan")]).unwrap();
    assert!(!t.root.join("orphan").exists());
    assert!(t.root.join("known").exists());
    assert_eq!(
        t.isolator.status(&id("known")).unwrap()["allow"],
        json!(default_lines())
    );
    t.isolator.cleanup(&id("known")).unwrap();
    assert!(!t.root.join("known").exists());
}

#[test]
fn describe_names_the_filter_and_the_default_list() {
    let t = v1();
    let described = t.isolator.describe();
    assert_eq!(described["mode"], "v1");
    assert_eq!(described["filter"], "devices.allow");
    assert_eq!(described["default_allow"], json!(default_lines()));
    let host = FakeCgroupfs::v2("/agent", "cpu memory pids");
    write_files(
        &host.path().join("agent/berth"),
        &[("cgroup.subtree_control", "")],
    );
    let v2 = DevicesIsolator::new(host.root("berth")).unwrap();
    assert_eq!(v2.describe()["filter"], "ebpf");
    // Nothing to enable on v2: the filter is a program, not a controller.
    assert_eq!(read(host.path().join("agent/cgroup.subtree_control")), "");
}
