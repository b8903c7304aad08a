//! The layer against the real kernel (root, cgroups mounted): a busy cgroup
//! is retried and then refused, and removed once its task is gone.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_cgroups::{CgroupError, CgroupRoot, Controller};

fn unique_root() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "berth-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root");
        return true;
    }
    false
}

#[test]
fn busy_cgroup_is_retried_then_removed_after_its_task_exits() {
    if skip() {
        return;
    }
    let root = CgroupRoot::detect(&unique_root()).unwrap();
    let controller = Controller::Memory;
    if !root.has(controller) {
        eprintln!("SKIPPED: memory controller not available");
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
