//! berth's built-in `cpu` isolator.
//!
//! From `resources.cpus` it sets, as Mesos does, `cpu.shares =
//! max(1024 × cpus, 2)` and a CFS quota of `max(100 ms × cpus, 1 ms)` per
//! 100 ms period; on cgroup v2 the shares become `cpu.weight` by the
//! quadratic formula of runc/crun/youki and the quota goes to `cpu.max`.
//! Every container gets a cpu cgroup, limited or not, for accounting.
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_cgroups::CgroupRoot;
//! use berth_isolator_cpu::{CpuIsolator, CpuOptions};
//!
//! let root = Arc::new(CgroupRoot::detect("/berth")?);
//! let cpu = CpuIsolator::new(root, CpuOptions::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod isolator;
mod limits;
mod resources;
mod stats;

pub use isolator::{CpuIsolator, CpuOptions};
pub use limits::{
    host_cpus, shares_to_weight, validate_cpus, CpuLimits, CFS_PERIOD_US, MAX_CPUS,
    MIN_CFS_QUOTA_US, MIN_SHARES, SHARES_PER_CPU,
};
pub use resources::CpuResources;
