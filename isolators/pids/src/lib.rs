//! berth's built-in `pids` isolator.
//!
//! Every container gets a pids cgroup whose `pids.max` (the same file on
//! cgroup v1 and v2) caps how many tasks — processes and threads — it may
//! have at once: `resources.pids_limit`, or the agent's default (4096, as a
//! fork bomb must not take the host's pid space). A fork past the limit
//! fails with `EAGAIN`; the container goes on. Usage reports `current` and
//! `limit`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_cgroups::CgroupRoot;
//! use berth_isolator_pids::{PidsIsolator, PidsOptions};
//!
//! let root = Arc::new(CgroupRoot::detect("/berth")?);
//! let pids = PidsIsolator::new(root, PidsOptions::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod isolator;
mod limit;
mod resources;

pub use isolator::PidsIsolator;
pub use limit::{PidsOptions, DEFAULT_PIDS_LIMIT, MAX_PIDS_LIMIT};
pub use resources::PidsResources;
