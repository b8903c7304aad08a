//! The layer against the real kernel (root, cgroups mounted): a busy cgroup
//! is retried and then refused, and removed once its task is gone.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_cgroups::testing::{skip_unless_root, TestRoot};
use berth_cgroups::{CgroupError, Controller};

#[test]
fn busy_cgroup_is_retried_then_removed_after_its_task_exits() {
    if skip_unless_root() {
        return;
    }
    let root = TestRoot::detect();
    let controller = Controller::Memory;
    if !root.has(controller) {
        berth_cgroups::testing::skip("cgroups real_kernel", "memory controller not available");
        return;
    }
    root.ensure(&[controller]).unwrap();
    let cg = root.container("busy").unwrap();
    cg.create(controller).unwrap();
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    cg.add_process(controller, child.id()).unwrap();
    assert_eq!(cg.pids(controller).unwrap(), vec![child.id()]);

    let start = Instant::now();
    let err = cg.remove(controller).unwrap_err();
    assert!(matches!(err, CgroupError::Busy { .. }), "{err}");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "retried for about 2 s"
    );
    assert!(
        err.to_string()
            .contains(&cg.path(controller).unwrap().display().to_string()),
        "{err}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    cg.remove(controller).unwrap();
    assert!(!cg.exists(controller));
    root.remove().unwrap();
    assert!(!root.dir(controller).unwrap().exists());
}

/// A statistics file kept open between reads (`pids.current`) reads the
/// kernel's current figure every time, and after its cgroup is removed and
/// made again under the same name, the figure of the new cgroup.
#[test]
fn a_kept_statistics_file_reads_fresh_figures_across_a_remade_cgroup() {
    if skip_unless_root() {
        return;
    }
    let root = TestRoot::detect();
    let controller = Controller::Pids;
    if !root.has(controller) {
        berth_cgroups::testing::skip("cgroups real_kernel", "pids controller not available");
        return;
    }
    root.ensure(&[controller]).unwrap();
    let cg = root.container("kept").unwrap();
    cg.create(controller).unwrap();
    assert_eq!(cg.read_u64(controller, "pids.current").unwrap(), 0);
    let mut first = Command::new("sleep").arg("30").spawn().unwrap();
    let mut second = Command::new("sleep").arg("30").spawn().unwrap();
    cg.add_process(controller, first.id()).unwrap();
    assert_eq!(cg.read_u64(controller, "pids.current").unwrap(), 1);
    cg.add_process(controller, second.id()).unwrap();
    assert_eq!(cg.read_u64(controller, "pids.current").unwrap(), 2);
    for child in [&mut first, &mut second] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(cg.read_u64(controller, "pids.current").unwrap(), 0);

    // Removed: the kept file's read fails and the path's own error shows.
    cg.remove(controller).unwrap();
    let err = cg.read_u64(controller, "pids.current").unwrap_err();
    assert!(matches!(err, CgroupError::Read { .. }), "{err}");
    // Made again: the same handle reads the new cgroup.
    cg.create(controller).unwrap();
    let mut third = Command::new("sleep").arg("30").spawn().unwrap();
    cg.add_process(controller, third.id()).unwrap();
    assert_eq!(cg.read_u64(controller, "pids.current").unwrap(), 1);
    third.kill().unwrap();
    third.wait().unwrap();
    cg.remove(controller).unwrap();
    root.remove().unwrap();
}
