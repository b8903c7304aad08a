//! The devices isolator against the real kernel (root): on cgroup v1 the
//! container's `devices.list` is exactly the allow list and a process in
//! the cgroup cannot open a node outside it; the generated cgroup v2 eBPF
//! filter is loaded, attached to a cgroup of the unified hierarchy (present
//! on hybrid hosts too) and enforced the same way.

use berth_isolator::TypedSection;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_cgroups::testing::{skip, skip_unless_root, unique_root_value, TestRoot};
use berth_cgroups::{CgroupMode, Controller};
use berth_isolator::{ContainerConfig, ContainerId, Isolator};
use berth_isolator_devices::{
    default_rules, ebpf, DeviceMapping, DeviceRule, DevicesIsolator, DevicesResources,
};

/// Kills and reaps a child we started (only that pid).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two host character devices that are not on the default allow list: one
/// to deny, one to pass through read-only, with its numbers.
fn nodes() -> Option<(&'static str, &'static str, u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let found: Vec<(&str, u64)> = ["/dev/kvm", "/dev/loop-control", "/dev/kmsg"]
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            meta.file_type().is_char_device().then(|| (p, meta.rdev()))
        })
        .collect();
    match found[..] {
        [(denied, _), (passed, rdev), ..] => {
            Some((denied, passed, libc::major(rdev), libc::minor(rdev)))
        }
        _ => None,
    }
}

/// A shell that waits for a line, then tries to open `denied`, `passed`
/// and /dev/zero for reading and says which opened.
fn prober(denied: &str, passed: &str) -> Reaped {
    let script = format!(
        "read x; for f in {denied} {passed} /dev/zero; do (exec 3<$f) 2>/dev/null && echo $f=ok || echo $f=refused; done"
    );
    Reaped(
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Releases the prober and returns what it printed.
fn probe(child: &mut Reaped) -> String {
    child.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[test]
fn v1_devices_list_is_the_allow_list_and_other_nodes_are_refused() {
    if skip_unless_root() {
        return;
    }
    let root = TestRoot::detect();
    if root.mode() != CgroupMode::V1 {
        skip(
            "v1_devices_list_is_the_allow_list_and_other_nodes_are_refused",
            "not a cgroup v1 host (the v2 test covers it)",
        );
        return;
    }
    let Some((denied, passed, major, minor)) = nodes() else {
        skip(
            "v1_devices_list_is_the_allow_list_and_other_nodes_are_refused",
            "fewer than two device nodes outside the allow list on this host",
        );
        return;
    };
    let isolator = DevicesIsolator::new(root.shared()).unwrap();
    let id = ContainerId::new("devs").unwrap();
    let mut config = ContainerConfig::for_command(id.clone(), ["sh"]);
    config.resources = DevicesResources {
        devices: vec![DeviceMapping {
            host: passed.into(),
            container: None,
            access: Some("r".into()),
        }],
    }
    .into_resources();
    isolator.prepare(&id, &config).unwrap();
    let cgroup = root.container("devs").unwrap();
    let list = cgroup.read(Controller::Devices, "devices.list").unwrap();
    let mut expected: Vec<String> = default_rules().iter().map(DeviceRule::v1_line).collect();
    expected.push(format!("c {major}:{minor} r"));
    assert_eq!(list.lines().collect::<Vec<_>>(), expected);

    let mut child = prober(denied, passed);
    isolator.isolate(&id, child.0.id()).unwrap();
    let out = probe(&mut child);
    assert_eq!(
        out,
        format!("{denied}=refused\n{passed}=ok\n/dev/zero=ok\n"),
        "{out}"
    );
    drop(child);
    isolator.cleanup(&id).unwrap();
    assert!(!cgroup.path(Controller::Devices).unwrap().exists());
}

/// This process' own cgroup in the unified (cgroup2) hierarchy, if one is
/// mounted (berth's layer ignores an empty one on a hybrid host, so the
/// test finds it itself).
fn unified_own_dir() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount_point = mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        (fields.get(dash + 1) == Some(&"cgroup2") && fields[3] == "/").then(|| fields[4])
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new(mount_point).join(own.trim_start_matches('/')))
}

/// A cgroup of the unified hierarchy below this process' own, removed on drop.
struct UnifiedCgroup(PathBuf);

impl Drop for UnifiedCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn the_generated_v2_filter_is_enforced_by_the_kernel() {
    if skip_unless_root() {
        return;
    }
    let test = "the_generated_v2_filter_is_enforced_by_the_kernel";
    let Some((denied, passed, major, minor)) = nodes() else {
        skip(
            test,
            "fewer than two device nodes outside the allow list on this host",
        );
        return;
    };
    let unified = match unified_own_dir() {
        Some(dir) => dir,
        None => {
            skip(test, "no cgroup2 hierarchy mounted");
            return;
        }
    };
    let cgroup = UnifiedCgroup(unified.join(unique_root_value("berth-devices-test")));
    std::fs::create_dir(&cgroup.0).unwrap();

    let mut rules = default_rules();
    rules.push(DeviceRule {
        access: berth_isolator_devices::Access::READ,
        ..DeviceRule::char(major, minor)
    });
    let program = match ebpf::syscall::load(&ebpf::program(&rules)) {
        Ok(program) => program,
        Err(e) => panic!("the kernel refused the generated program: {e}"),
    };
    ebpf::syscall::attach(&cgroup.0, &program).unwrap();

    let mut child = prober(denied, passed);
    std::fs::write(cgroup.0.join("cgroup.procs"), child.0.id().to_string()).unwrap();
    let out = probe(&mut child);
    assert_eq!(
        out,
        format!("{denied}=refused\n{passed}=ok\n/dev/zero=ok\n"),
        "{out}"
    );
    // Write access to the passed node was not granted; /dev/full's was.
    let script = format!(
        "read x; (exec 3>{passed}) 2>/dev/null && echo w=ok || echo w=refused; \
         (exec 3>/dev/full) && echo full=ok"
    );
    let mut writer = Reaped(
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::fs::write(cgroup.0.join("cgroup.procs"), writer.0.id().to_string()).unwrap();
    assert_eq!(probe(&mut writer), "w=refused\nfull=ok\n");
    drop((child, writer));
    ebpf::syscall::detach(&cgroup.0, &program).unwrap();
}
