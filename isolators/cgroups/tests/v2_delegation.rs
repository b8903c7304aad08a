//! cgroup v2 under a delegated cgroup (systemd `Delegate=yes`), against a
//! fake tree: the agent leaves its delegated cgroup for a leaf before
//! enabling controllers, and never leaves behind controllers it enabled
//! when it then fails.

use std::fs;
use std::path::Path;

use berth_cgroups::fake::mountinfo_line;
use berth_cgroups::{CgroupError, CgroupRoot, Controller, Hierarchies, AGENT_LEAF};

/// A v2 tree with this process in `own` (below the mount), which offers
/// the usual controllers and has `procs` as its `cgroup.procs`.
fn tree(dir: &Path, own: &str, procs: &str) -> Hierarchies {
    fs::write(
        dir.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids",
    )
    .unwrap();
    fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
    let own_dir = dir.join(own.trim_start_matches('/'));
    fs::create_dir_all(&own_dir).unwrap();
    fs::write(own_dir.join("cgroup.controllers"), "cpu io memory pids").unwrap();
    fs::write(own_dir.join("cgroup.subtree_control"), "").unwrap();
    fs::write(own_dir.join("cgroup.procs"), procs).unwrap();
    fs::write(own_dir.join("cgroup.type"), "domain\n").unwrap();
    // What the kernel's mkdir of the leaf would bring.
    let leaf = own_dir.join(AGENT_LEAF);
    fs::create_dir_all(&leaf).unwrap();
    fs::write(leaf.join("cgroup.procs"), "").unwrap();
    let berth = own_dir.join("berth");
    fs::create_dir_all(&berth).unwrap();
    fs::write(berth.join("cgroup.subtree_control"), "").unwrap();
    let mountinfo = mountinfo_line(30, dir, "cgroup2", "rw,nsdelegate");
    Hierarchies::from_texts(&mountinfo, &format!("0::{own}\n")).unwrap()
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path.as_ref()).unwrap()
}

#[test]
fn agent_moves_into_its_leaf_then_enables_controllers_with_pids() {
    let tmp = tempfile::tempdir().unwrap();
    let me = std::process::id().to_string();
    let h = tree(tmp.path(), "/berth.service", &format!("{me}\n"));
    let root = CgroupRoot::new(h, "berth").unwrap();
    let own = tmp.path().join("berth.service");
    root.ensure(&[Controller::Cpu, Controller::Memory]).unwrap();
    assert_eq!(read(own.join("berth-agent/cgroup.procs")), me);
    assert_eq!(
        read(own.join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        read(own.join("berth/cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    // Containers go below the root, beside the agent's leaf.
    assert_eq!(
        root.container("c1")
            .unwrap()
            .path(Controller::Pids)
            .unwrap(),
        own.join("berth/c1")
    );
}

#[test]
fn a_process_in_the_leaf_keeps_the_delegated_cgroup_as_its_base() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tree(tmp.path(), "/berth.service/berth-agent", "");
    let root = CgroupRoot::new(h, "berth").unwrap();
    assert_eq!(
        root.dir(Controller::Cpu).unwrap(),
        tmp.path().join("berth.service/berth")
    );
    // The leaf's name is not a root of its own.
    let h = tree(tmp.path(), "/berth.service", "");
    assert!(matches!(
        CgroupRoot::new(h, "berth-agent/x"),
        Err(CgroupError::InvalidRoot { .. })
    ));
}

#[test]
fn other_processes_in_the_delegated_cgroup_are_a_clear_error_and_nothing_is_enabled() {
    let tmp = tempfile::tempdir().unwrap();
    let me = std::process::id().to_string();
    let h = tree(tmp.path(), "/session.scope", &format!("{me}\n4242\n"));
    let root = CgroupRoot::new(h, "berth").unwrap();
    let own = tmp.path().join("session.scope");
    let err = root.ensure(&[Controller::Cpu]).unwrap_err();
    assert!(
        matches!(&err, CgroupError::OtherProcesses { pids, .. } if pids == "4242"),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("4242") && message.contains("Delegate=yes"),
        "{message}"
    );
    assert_eq!(read(own.join("cgroup.subtree_control")), "");
    // The agent went back where it was.
    assert_eq!(read(own.join("cgroup.procs")), me);
}

#[test]
fn a_threaded_delegated_cgroup_is_refused_before_anything_is_enabled() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tree(tmp.path(), "/berth.service", "");
    let own = tmp.path().join("berth.service");
    fs::write(own.join("cgroup.type"), "domain threaded\n").unwrap();
    let root = CgroupRoot::new(h, "berth").unwrap();
    let err = root.ensure(&[Controller::Cpu]).unwrap_err();
    assert!(matches!(err, CgroupError::NotDomain { ref kind, .. } if kind == "domain threaded"));
    // Refused before anything was enabled.
    assert_eq!(read(own.join("cgroup.subtree_control")), "");
    assert_eq!(read(own.join("berth/cgroup.subtree_control")), "");
}

#[test]
fn a_refused_write_undoes_the_controllers_enabled_above() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tree(tmp.path(), "/berth.service", "");
    let own = tmp.path().join("berth.service");
    // The root's subtree_control cannot be written (EISDIR stands in for
    // the kernel's EBUSY/EOPNOTSUPP): the enable in own must be undone.
    fs::remove_file(own.join("berth/cgroup.subtree_control")).unwrap();
    fs::create_dir(own.join("berth/cgroup.subtree_control")).unwrap();
    let root = CgroupRoot::new(h, "berth").unwrap();
    assert!(root.ensure(&[Controller::Memory]).is_err());
    assert_eq!(read(own.join("cgroup.subtree_control")), "-memory -pids");
}
