//! Warming the kernel's cgroup migration lock before a launch's attach.
//!
//! Every migration of a process between cgroups (a write to `cgroup.procs`)
//! takes the kernel's global `cgroup_threadgroup_rwsem` for writing. That
//! per-cpu rwsem makes its first writer wait for an RCU grace period
//! (`rcu_sync_enter`: 6-12 ms on a 2-core host); writers that follow within
//! about one more grace period skip the wait. A launch's attach (the first
//! `cgroup.procs` write of the container's pid) is therefore the slowest
//! syscall of a launch, unless a migration just happened.
//!
//! [`Hierarchies::warm_attach`] makes one on purpose, off the launch's
//! critical path: it moves this process into the cgroup it is already in
//! (the kernel finds the source and destination sets equal and moves
//! nothing), which takes the rwsem and waits out the grace period on a
//! helper thread while the launch writes its bundle and starts its shim;
//! the real attach that follows then finds the lock warm (decision 0038).

use std::fs;

use crate::hierarchies::{CgroupMode, Hierarchies, Hierarchy};
use crate::{cgroupfs, proc_cgroup, CgroupError};

impl Hierarchies {
    /// Writes this process' pid to its own `cgroup.procs` in one hierarchy
    /// (a no-op migration, see the module doc). `/proc/self/cgroup` is read
    /// again first, so a process that moved since [`Hierarchies::detect`]
    /// (the agent into its leaf on v2) stays where it is now.
    pub fn warm_attach(&self) -> Result<(), CgroupError> {
        let (hierarchy, wanted) = match self.mode() {
            CgroupMode::V1 => {
                let Some((controller, hierarchy)) = self.v1_hierarchies().next() else {
                    return Err(CgroupError::NoCgroupMounts);
                };
                (hierarchy, Some(controller))
            }
            CgroupMode::V2 => match self.unified_hierarchy() {
                Some(hierarchy) => (hierarchy, None),
                None => return Err(CgroupError::NoCgroupMounts),
            },
        };
        let path = std::path::Path::new("/proc/self/cgroup");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let own = proc_cgroup::parse(&text)?
            .into_iter()
            .find(|o| match wanted {
                Some(controller) => o.controllers.contains(&controller),
                None => o.unified && o.hierarchy_id == 0,
            })
            .map(|o| o.path);
        let now = Hierarchy {
            own,
            ..hierarchy.clone()
        };
        let dir = now.own_dir()?;
        cgroupfs::write(&dir.join("cgroup.procs"), &std::process::id().to_string())
    }
}
