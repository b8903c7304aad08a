//! The blkio isolator against fake cgroupfs trees: the files it writes and
//! the usage it parses, on v1 and v2, with and without a weight file.
//!
//! Devices must still exist on the host (validation looks at /dev and
//! sysfs): the tests use the disk holding `/`, and skip where there is none.

use berth_isolator::TypedSection;
use std::fs;
use std::path::{Path, PathBuf};

use berth_cgroups::fake::{forget_files, id, read, write_files, FakeCgroupfs};
use berth_isolator::{ContainerConfig, Isolator, IsolatorError, RecoveredContainer, Resources};
use berth_isolator_blkio::{BlkioIsolator, DeviceNumber};
use berth_isolator_blkio::{BlkioResources, DeviceLimit};
use serde_json::json;

fn limit(device: &str, rate: u64) -> DeviceLimit {
    DeviceLimit {
        device: device.into(),
        rate,
    }
}

fn config(name: &str, resources: Resources) -> ContainerConfig {
    let mut config = ContainerConfig::for_command(id(name), ["true"]);
    config.resources = resources;
    config
}

/// The whole disk holding `/`, with a `/dev` path for it when there is one.
fn root_disk() -> Option<(DeviceNumber, Option<String>)> {
    let disk = DeviceNumber::backing(Path::new("/"))?;
    Some((disk, disk.dev_path()))
}

macro_rules! disk_or_skip {
    () => {
        match root_disk() {
            Some(disk) => disk,
            None => {
                berth_cgroups::testing::skip("blkio fake_tree", "/ is not on a block device");
                return;
            }
        }
    };
}

fn field_of(err: &IsolatorError) -> &str {
    match err {
        IsolatorError::InvalidConfig { field, .. } => field,
        other => panic!("not an InvalidConfig: {other}"),
    }
}

struct V1 {
    _host: FakeCgroupfs,
    /// The berth root in the fake blkio hierarchy.
    root: PathBuf,
    isolator: BlkioIsolator,
}

const V1_ROOT_FILES: &[(&str, &str)] = &[
    ("blkio.throttle.read_bps_device", ""),
    ("blkio.throttle.write_bps_device", ""),
    ("blkio.throttle.read_iops_device", ""),
    ("blkio.throttle.write_iops_device", ""),
    // The kernel has the recursive statistics (the isolator looks once).
    ("blkio.throttle.io_service_bytes_recursive", "Total 0\n"),
];

/// A v1 blkio hierarchy whose berth root holds `weight_file` (if any).
fn v1(weight_file: Option<&str>) -> V1 {
    let mut host = FakeCgroupfs::new();
    let root = host.mount_v1("blkio", "/").join("berth");
    write_files(&root, V1_ROOT_FILES);
    if let Some(file) = weight_file {
        write_files(&root, &[(file, "100\n")]);
    }
    let isolator = BlkioIsolator::new(host.root("berth")).unwrap();
    V1 {
        _host: host,
        root,
        isolator,
    }
}

/// What mkdir of container `name` would create in the kernel.
fn fake_v1_container(t: &V1, name: &str, weight_file: Option<&str>, disk: DeviceNumber) {
    let dir = t.root.join(name);
    write_files(&dir, V1_ROOT_FILES);
    let bytes = format!(
        "{disk} Read 4096\n{disk} Write 20971520\n{disk} Sync 20971520\n{disk} Async 4096\n{disk} Discard 0\n{disk} Total 20975616\nTotal 20975616\n"
    );
    let ops = format!("{disk} Read 1\n{disk} Write 20\n{disk} Total 21\nTotal 21\n");
    write_files(
        &dir,
        &[
            ("cgroup.procs", ""),
            ("blkio.throttle.io_service_bytes", "Total 0\n"),
            ("blkio.throttle.io_serviced", "Total 0\n"),
            ("blkio.throttle.io_service_bytes_recursive", &bytes),
            ("blkio.throttle.io_serviced_recursive", &ops),
        ],
    );
    if let Some(file) = weight_file {
        write_files(&dir, &[(file, "100\n")]);
    }
}

#[test]
fn v1_prepare_isolate_usage_update_cleanup() {
    let (disk, path) = disk_or_skip!();
    let t = v1(Some("blkio.bfq.weight"));
    let describe = t.isolator.describe();
    assert_eq!(describe["mode"], json!("v1"));
    assert_eq!(describe["weight"], json!(true));
    assert_eq!(describe["weight_file"], json!("blkio.bfq.weight"));
    assert_eq!(describe["throttle"], json!(true));
    assert!(describe["bfq_devices"].is_array());

    fake_v1_container(&t, "c1", Some("blkio.bfq.weight"), disk);
    let c1 = id("c1");
    let by_path = path.clone().unwrap_or_else(|| disk.to_string());
    let resources = BlkioResources {
        blkio_weight: Some(500),
        device_write_bps: vec![limit(&by_path, 5 << 20)],
        device_read_iops: vec![limit(&disk.to_string(), 100)],
        ..Default::default()
    }
    .into_resources();
    let contribution = t
        .isolator
        .prepare(&c1, &config("c1", resources.clone()))
        .unwrap();
    assert_eq!(
        contribution.linux_resources["blockIO"],
        json!({
            "weight": 500,
            "throttleWriteBpsDevice": [{"major": disk.major, "minor": disk.minor, "rate": 5 << 20}],
            "throttleReadIOPSDevice": [{"major": disk.major, "minor": disk.minor, "rate": 100}],
        })
    );
    let dir = t.root.join("c1");
    assert_eq!(read(dir.join("blkio.bfq.weight")), "500");
    assert_eq!(
        read(dir.join("blkio.throttle.write_bps_device")),
        format!("{disk} {}", 5 << 20)
    );
    assert_eq!(
        read(dir.join("blkio.throttle.read_iops_device")),
        format!("{disk} 100")
    );
    assert_eq!(read(dir.join("blkio.throttle.read_bps_device")), "");

    t.isolator.isolate(&c1, 4242).unwrap();

    berth_cgroups::fake::assert_joinable_where_isolated(&t.isolator, &c1, 4242);
    assert_eq!(read(dir.join("cgroup.procs")), "4242");

    let usage = t.isolator.usage(&c1).unwrap();
    let io = &usage["devices"][disk.to_string()];
    assert_eq!(io["read_bytes"], json!(4096), "{usage:?}");
    assert_eq!(io["write_bytes"], json!(20971520));
    assert_eq!(io["read_ops"], json!(1));
    assert_eq!(io["write_ops"], json!(20));
    assert_eq!(io["name"], json!(disk.name()));
    assert_eq!(usage["weight"], json!(500));
    assert_eq!(
        usage["throttles"][disk.to_string()],
        json!({"write_bps": 5 << 20, "read_iops": 100})
    );

    // The agent passes the full merged resources: a new weight and write
    // rate, the read iops throttle gone (reset with 0), a read bps added.
    let updated = BlkioResources {
        blkio_weight: Some(200),
        device_write_bps: vec![limit(&disk.to_string(), 1 << 20)],
        device_read_bps: vec![limit(&by_path, 7 << 20)],
        ..Default::default()
    }
    .into_resources();
    t.isolator.update(&c1, &updated).unwrap();
    assert_eq!(read(dir.join("blkio.bfq.weight")), "200");
    assert_eq!(
        read(dir.join("blkio.throttle.write_bps_device")),
        format!("{disk} {}", 1 << 20)
    );
    assert_eq!(
        read(dir.join("blkio.throttle.read_iops_device")),
        format!("{disk} 0")
    );
    assert_eq!(
        read(dir.join("blkio.throttle.read_bps_device")),
        format!("{disk} {}", 7 << 20)
    );

    // Invalid updates are refused before anything is written.
    for bad in [
        BlkioResources {
            blkio_weight: Some(5),
            ..BlkioResources::of(&updated).unwrap()
        }
        .into_resources(),
        BlkioResources {
            device_write_bps: vec![limit("/dev/null", 1)],
            ..BlkioResources::of(&updated).unwrap()
        }
        .into_resources(),
        BlkioResources {
            device_write_bps: vec![limit(&disk.to_string(), 0)],
            ..BlkioResources::of(&updated).unwrap()
        }
        .into_resources(),
    ] {
        assert!(matches!(
            t.isolator.update(&c1, &bad).unwrap_err(),
            IsolatorError::InvalidConfig { .. }
        ));
    }
    assert_eq!(read(dir.join("blkio.bfq.weight")), "200");
    assert_eq!(
        read(dir.join("blkio.throttle.write_bps_device")),
        format!("{disk} {}", 1 << 20)
    );

    // A write the kernel refuses (here: a file that cannot be written) is a
    // refused update, and the old values are put back.
    fs::remove_file(dir.join("blkio.throttle.write_iops_device")).unwrap();
    fs::create_dir(dir.join("blkio.throttle.write_iops_device")).unwrap();
    let err = t
        .isolator
        .update(
            &c1,
            &BlkioResources {
                blkio_weight: Some(900),
                device_write_iops: vec![limit(&disk.to_string(), 10)],
                ..BlkioResources::of(&updated).unwrap()
            }
            .into_resources(),
        )
        .unwrap_err();
    assert!(matches!(err, IsolatorError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("write_iops_device"), "{err}");
    assert_eq!(read(dir.join("blkio.bfq.weight")), "200");
    fs::remove_dir(dir.join("blkio.throttle.write_iops_device")).unwrap();
    assert_eq!(t.isolator.usage(&c1).unwrap()["weight"], json!(200));

    assert!(matches!(
        t.isolator.update(&id("nope"), &updated),
        Err(IsolatorError::UnknownContainer { .. })
    ));

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
fn a_weight_without_a_weight_file_is_unsupported_and_creates_nothing() {
    let (disk, _) = disk_or_skip!();
    let t = v1(None);
    let describe = t.isolator.describe();
    assert_eq!(describe["weight"], json!(false));
    assert_eq!(describe["weight_file"], json!(null));
    assert_eq!(describe["throttle"], json!(true));
    let asked = config(
        "c1",
        BlkioResources {
            blkio_weight: Some(500),
            ..Default::default()
        }
        .into_resources(),
    );
    let err = t.isolator.validate(&asked).unwrap_err();
    assert!(matches!(err, IsolatorError::Unsupported { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("resources.blkio_weight")
            && msg.contains("blkio.weight")
            && msg.contains("blkio.bfq.weight"),
        "{msg}"
    );
    assert!(t.isolator.prepare(&id("c1"), &asked).is_err());
    assert!(!t.root.join("c1").exists());

    // Throttles alone still work; the cgroup is there for accounting.
    fake_v1_container(&t, "c2", None, disk);
    let throttled = BlkioResources {
        device_write_bps: vec![limit(&disk.to_string(), 1 << 20)],
        ..Default::default()
    }
    .into_resources();
    t.isolator
        .prepare(&id("c2"), &config("c2", throttled.clone()))
        .unwrap();
    // An update adding a weight is unsupported too, and changes nothing.
    let err = t
        .isolator
        .update(
            &id("c2"),
            &BlkioResources {
                blkio_weight: Some(100),
                ..BlkioResources::of(&throttled).unwrap()
            }
            .into_resources(),
        )
        .unwrap_err();
    assert!(matches!(err, IsolatorError::Unsupported { .. }), "{err}");
}

#[test]
fn bad_requests_name_the_field_and_the_device() {
    let (disk, _) = disk_or_skip!();
    let t = v1(Some("blkio.weight"));
    let check = |resources: Resources, field: &str, mentions: &str| {
        let err = t.isolator.validate(&config("c1", resources)).unwrap_err();
        assert_eq!(field_of(&err), field, "{err}");
        assert!(err.to_string().contains(mentions), "{err}");
    };
    check(
        BlkioResources {
            device_write_bps: vec![limit("/dev/null", 1 << 20)],
            ..Default::default()
        }
        .into_resources(),
        "resources.device_write_bps",
        "/dev/null is not a block device",
    );
    check(
        BlkioResources {
            device_read_bps: vec![limit("/dev/berth-missing", 1 << 20)],
            ..Default::default()
        }
        .into_resources(),
        "resources.device_read_bps",
        "/dev/berth-missing",
    );
    check(
        BlkioResources {
            device_read_iops: vec![limit("1:3", 10)],
            ..Default::default()
        }
        .into_resources(),
        "resources.device_read_iops",
        "no block device 1:3",
    );
    check(
        BlkioResources {
            device_write_iops: vec![limit("sda", 10)],
            ..Default::default()
        }
        .into_resources(),
        "resources.device_write_iops",
        "\"sda\"",
    );
    check(
        BlkioResources {
            device_write_bps: vec![limit(&disk.to_string(), 0)],
            ..Default::default()
        }
        .into_resources(),
        "resources.device_write_bps",
        &disk.to_string(),
    );
    check(
        BlkioResources {
            device_write_bps: vec![limit(&disk.to_string(), 1), limit(&disk.to_string(), 2)],
            ..Default::default()
        }
        .into_resources(),
        "resources.device_write_bps",
        "listed twice",
    );
    for weight in [0, 9, 1001] {
        check(
            BlkioResources {
                blkio_weight: Some(weight),
                ..Default::default()
            }
            .into_resources(),
            "resources.blkio_weight",
            &weight.to_string(),
        );
    }
    assert!(!t.root.join("c1").exists());
}

#[test]
fn a_device_named_twice_across_an_update_keeps_the_later_rate() {
    let (disk, path) = disk_or_skip!();
    let Some(path) = path else {
        berth_cgroups::testing::skip("blkio fake_tree", "no /dev path for the root disk");
        return;
    };
    let t = v1(None);
    fake_v1_container(&t, "c1", None, disk);
    let launch = BlkioResources {
        device_write_bps: vec![limit(&path, 1 << 20)],
        ..Default::default()
    };
    t.isolator
        .prepare(&id("c1"), &config("c1", launch.clone().into_resources()))
        .unwrap();
    // BlkioResources::merged_with keys entries by the string given, so the
    // same disk by number is appended after its path.
    let update = BlkioResources {
        device_write_bps: vec![limit(&disk.to_string(), 3 << 20)],
        ..Default::default()
    };
    let merged = launch.merged_with(&update).into_resources();
    // The agent validates the merged resources first: not a duplicate.
    t.isolator.validate(&config("c1", merged.clone())).unwrap();
    t.isolator.update(&id("c1"), &merged).unwrap();
    assert_eq!(
        read(t.root.join("c1/blkio.throttle.write_bps_device")),
        format!("{disk} {}", 3 << 20)
    );
}

#[test]
fn no_blkio_resources_still_creates_the_cgroup_for_accounting() {
    let (disk, _) = disk_or_skip!();
    let t = v1(Some("blkio.bfq.weight"));
    fake_v1_container(&t, "c1", Some("blkio.bfq.weight"), disk);
    let contribution = t
        .isolator
        .prepare(&id("c1"), &config("c1", Resources::default()))
        .unwrap();
    assert!(contribution.linux_resources.is_empty());
    assert_eq!(read(t.root.join("c1/blkio.bfq.weight")), "100\n");
    let usage = t.isolator.usage(&id("c1")).unwrap();
    assert_eq!(usage["devices"][disk.to_string()]["write_ops"], json!(20));
    assert!(usage.get("weight").is_none() && usage.get("throttles").is_none());
}

#[test]
fn recover_removes_orphans_and_keeps_known_containers() {
    let (disk, _) = disk_or_skip!();
    let t = v1(None);
    fs::create_dir_all(t.root.join("orphan")).unwrap();
    fake_v1_container(&t, "known", None, disk);
    let known = RecoveredContainer {
        config: config(
            "known",
            BlkioResources {
                device_write_bps: vec![limit(&disk.to_string(), 1 << 20)],
                ..Default::default()
            }
            .into_resources(),
        ),
        pid: Some(1),
    };
    t.isolator.recover(&[known], &[id("orphan")]).unwrap();
    assert!(!t.root.join("orphan").exists());
    let usage = t.isolator.usage(&id("known")).unwrap();
    assert_eq!(
        usage["throttles"][disk.to_string()]["write_bps"],
        json!(1 << 20)
    );
}

/// A v2 tree: the agent's own cgroup offers io, the berth root below it.
fn v2(weight_files: &[&str]) -> (FakeCgroupfs, PathBuf, BlkioIsolator) {
    let host = FakeCgroupfs::v2("/agent", "cpu io memory");
    let own = host.path().join("agent");
    let root = own.join("berth");
    write_files(&root, &[("cgroup.subtree_control", ""), ("io.max", "")]);
    for file in weight_files {
        write_files(&root, &[(file, "default 100\n")]);
    }
    let isolator = BlkioIsolator::new(host.root("berth")).unwrap();
    assert_eq!(read(own.join("cgroup.subtree_control")), "+io");
    assert_eq!(read(root.join("cgroup.subtree_control")), "+io");
    (host, root, isolator)
}

#[test]
fn v2_writes_io_weight_io_max_and_parses_io_stat() {
    let (disk, _) = disk_or_skip!();
    let (_host, root, isolator) = v2(&["io.weight", "io.bfq.weight"]);
    let describe = isolator.describe();
    assert_eq!(describe["mode"], json!("v2"));
    assert_eq!(describe["weight_file"], json!("io.weight"));
    assert_eq!(
        describe["weight_files"],
        json!(["io.weight", "io.bfq.weight"])
    );
    assert_eq!(describe["throttle"], json!(true));

    let dir = root.join("c1");
    write_files(
        &dir,
        &[
            ("cgroup.procs", ""),
            ("io.weight", "default 100\n"),
            ("io.bfq.weight", "default 100\n"),
            ("io.max", ""),
            (
                "io.stat",
                &format!("{disk} rbytes=8192 wbytes=20971520 rios=2 wios=20 dbytes=0 dios=0\n"),
            ),
        ],
    );
    let c1 = id("c1");
    let resources = BlkioResources {
        blkio_weight: Some(500),
        device_write_bps: vec![limit(&disk.to_string(), 5 << 20)],
        device_read_iops: vec![limit(&disk.to_string(), 100)],
        ..Default::default()
    }
    .into_resources();
    isolator.prepare(&c1, &config("c1", resources)).unwrap();
    assert_eq!(read(dir.join("io.weight")), "default 4950");
    assert_eq!(read(dir.join("io.bfq.weight")), "500");
    assert_eq!(
        read(dir.join("io.max")),
        format!("{disk} rbps=max wbps={} riops=100 wiops=max", 5 << 20)
    );
    isolator.isolate(&c1, 77).unwrap();
    assert_eq!(read(dir.join("cgroup.procs")), "77");

    let usage = isolator.usage(&c1).unwrap();
    let io = &usage["devices"][disk.to_string()];
    assert_eq!(io["read_bytes"], json!(8192));
    assert_eq!(io["write_bytes"], json!(20971520));
    assert_eq!(io["read_ops"], json!(2));
    assert_eq!(io["write_ops"], json!(20));

    // Weight to the ends of the range; every throttle gone: reset to max.
    isolator
        .update(
            &c1,
            &BlkioResources {
                blkio_weight: Some(1000),
                ..Default::default()
            }
            .into_resources(),
        )
        .unwrap();
    assert_eq!(read(dir.join("io.weight")), "default 10000");
    assert_eq!(
        read(dir.join("io.max")),
        format!("{disk} rbps=max wbps=max riops=max wiops=max")
    );
    isolator
        .update(
            &c1,
            &BlkioResources {
                blkio_weight: Some(10),
                ..Default::default()
            }
            .into_resources(),
        )
        .unwrap();
    assert_eq!(read(dir.join("io.weight")), "default 1");

    forget_files(&dir);
    isolator.cleanup(&c1).unwrap();
    assert!(!dir.exists());
}

#[test]
fn v2_without_weight_files_says_so() {
    let (_host, _root, isolator) = v2(&[]);
    let describe = isolator.describe();
    assert_eq!(describe["weight"], json!(false));
    assert_eq!(describe["weight_file"], json!(null));
    let err = isolator
        .validate(&config(
            "c1",
            BlkioResources {
                blkio_weight: Some(100),
                ..Default::default()
            }
            .into_resources(),
        ))
        .unwrap_err();
    assert!(
        err.to_string().contains("io.weight or io.bfq.weight"),
        "{err}"
    );
}
