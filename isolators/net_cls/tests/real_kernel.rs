//! The net_cls isolator against the real kernel (root, cgroup v1): it
//! mounts a missing hierarchy, and a container cgroup carries its class id.
//!
//! The mount test runs in a private mount namespace (this test binary
//! re-executed under `unshare --mount`), where the host's net_cls mount is
//! removed first: the host's mounts are never touched.

use berth_isolator::TypedSection;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use berth_cgroups::testing::{skip_unless_root, unique_root_value};
use berth_cgroups::{CgroupMode, CgroupRoot, Controller, Hierarchies};
use berth_isolator::{ContainerConfig, ContainerId, Isolator};
use berth_isolator_net_cls::NetClsResources;
use berth_isolator_net_cls::{NetClsIsolator, NetClsOptions, DEFAULT_MOUNT_POINT};

const INNER: &str = "BERTH_NET_CLS_TEST_IN_PRIVATE_MOUNT_NS";

fn skip() -> bool {
    if skip_unless_root() {
        return true;
    }
    let enabled = std::fs::read_to_string("/proc/cgroups")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            matches!(
                l.split_whitespace().collect::<Vec<_>>()[..],
                ["net_cls", _, _, "1"]
            )
        });
    let v1 = Hierarchies::detect().is_ok_and(|h| h.mode() == CgroupMode::V1);
    if !enabled || !v1 {
        berth_cgroups::testing::skip(
            "net_cls real_kernel",
            "needs cgroup v1 with net_cls in the kernel",
        );
        return true;
    }
    false
}

fn root_name() -> String {
    unique_root_value("berth-nc-test")
}

#[test]
fn mounts_a_missing_hierarchy_in_a_private_mount_namespace() {
    if skip() {
        return;
    }
    let have_unshare = Command::new("sh")
        .args(["-c", "command -v unshare"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_unshare {
        berth_cgroups::testing::skip("net_cls real_kernel", "needs unshare (util-linux)");
        return;
    }
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "inner_mount", "--ignored", "--nocapture"])
        .env(INNER, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs only inside the private mount namespace made by the test above.
#[test]
#[ignore = "run by mounts_a_missing_hierarchy_in_a_private_mount_namespace"]
fn inner_mount() {
    assert_eq!(
        std::env::var(INNER).as_deref(),
        Ok("1"),
        "only in a private mount namespace"
    );
    let mount_point = Path::new(DEFAULT_MOUNT_POINT);
    // Remove every net_cls mount in this namespace (the hierarchy lives on
    // on the host, which keeps its mount).
    while let Ok(at) = Hierarchies::detect()
        .unwrap()
        .mount_point(Controller::NetCls)
        .map(Path::to_path_buf)
    {
        nix::mount::umount(&at).unwrap();
    }
    let name = root_name();
    let given = Arc::new(CgroupRoot::detect(&name).unwrap());
    assert!(!given.has(Controller::NetCls));
    let isolator = NetClsIsolator::new(given, NetClsOptions::default()).unwrap();
    let root = isolator.root().clone();
    let result = std::panic::catch_unwind(|| {
        assert!(root.has(Controller::NetCls));
        assert_eq!(
            Hierarchies::detect()
                .unwrap()
                .mount_point(Controller::NetCls)
                .unwrap(),
            mount_point
        );
        let describe = isolator.describe();
        assert_eq!(describe["mounted_by_agent"], true, "{describe:?}");
        assert_eq!(describe["mount_point"], DEFAULT_MOUNT_POINT);
        // A second isolator finds the mount.
        let again = NetClsIsolator::new(
            Arc::new(CgroupRoot::detect(&name).unwrap()),
            NetClsOptions::default(),
        )
        .unwrap();
        assert_eq!(again.describe()["mounted_by_agent"], false);
    });
    root.remove().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_container_cgroup_carries_its_classid_and_the_process_joins_it() {
    if skip() {
        return;
    }
    let root = Arc::new(CgroupRoot::detect(&root_name()).unwrap());
    let isolator = NetClsIsolator::new(root, NetClsOptions::default()).unwrap();
    let root = isolator.root().clone();
    let result = std::panic::catch_unwind(|| {
        let id = ContainerId::new("c1").unwrap();
        let runtime = tempfile::tempdir().unwrap();
        let mut config = ContainerConfig::for_command(id.clone(), ["sleep"]);
        config.resources = NetClsResources {
            net_cls_handle: Some(0x42),
        }
        .into_resources();
        config.runtime_dir = runtime.path().to_path_buf();
        isolator.validate(&config).unwrap();
        isolator.prepare(&id, &config).unwrap();
        let cgroup = root.container("c1").unwrap();
        assert_eq!(
            cgroup
                .read_u64(Controller::NetCls, "net_cls.classid")
                .unwrap(),
            0xAAAA_0042
        );
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        isolator.isolate(&id, child.id()).unwrap();
        assert_eq!(cgroup.pids(Controller::NetCls).unwrap(), vec![child.id()]);
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(
            own.lines()
                .any(|l| l.contains("net_cls") && l.ends_with("/c1")),
            "{own}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        isolator.cleanup(&id).unwrap();
        assert!(!cgroup.exists(Controller::NetCls));
        assert!(isolator.validate(&config).is_ok(), "freed");
    });
    root.remove().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
