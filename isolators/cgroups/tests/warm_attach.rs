//! `Hierarchies::warm_attach` against the real kernel (root): the no-op
//! migration succeeds and leaves this process in the cgroups it was in.
//! (What it is for, a faster attach after it, is measured in
//! benches/launch.sh, not timed here.)

use berth_cgroups::testing::skip_unless_root;
use berth_cgroups::{CgroupError, CgroupMode, Hierarchies};

#[test]
fn warm_attach_moves_nothing() {
    if skip_unless_root() {
        return;
    }
    let hierarchies = Hierarchies::detect().unwrap();
    let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for _ in 0..3 {
        match hierarchies.warm_attach() {
            Ok(()) => {}
            // v2's no-internal-process rule refuses even a no-op move into
            // a cgroup with controllers enabled below it (best effort there).
            Err(e @ CgroupError::Write { .. }) if hierarchies.mode() == CgroupMode::V2 => {
                eprintln!("warm_attach refused on v2: {e}");
            }
            Err(e) => panic!("warm_attach: {e}"),
        }
    }
    let after = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert_eq!(before, after, "the process is where it was");
}
