//! A thin cgroup v1/v2 layer for berth's isolators.
//!
//! It knows where cgroups are (mode detection from `/proc/self/mountinfo`
//! and `/proc/self/cgroup`, the `--cgroup-root`, a container's directory per
//! controller) and how to handle their files (errors naming path and value,
//! `rmdir` that waits out a busy cgroup). It does *not* know what values mean:
//! each isolator writes its own v1 or v2 files. See
//! `docs/decisions/0001-cgroup-layer.md` for why this is not `cgroups-rs`.
//!
//! ```no_run
//! use berth_cgroups::{CgroupRoot, Controller};
//!
//! let root = CgroupRoot::detect("berth")?; // below the agent's own cgroup
//! root.ensure(&[Controller::Cpu, Controller::Memory])?;
//! let cgroup = root.container("web-1")?;
//! cgroup.create(Controller::Memory)?;
//! cgroup.write(Controller::Memory, "memory.limit_in_bytes", "67108864")?;
//! cgroup.add_process(Controller::Memory, 4242)?;
//! # Ok::<(), berth_cgroups::CgroupError>(())
//! ```
//!
//! With the `fake` feature, `berth_cgroups::fake` builds fake cgroupfs trees
//! and `berth_cgroups::testing` sets up real-kernel tests, for the tests of
//! isolators built on this layer.

#![warn(missing_docs)]

mod bytes;
mod cgroupfs;
mod container;
mod controller;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
mod hierarchies;
mod isolator_error;
mod kept_files;
mod mountinfo;
mod proc_cgroup;
mod root;
#[cfg(feature = "fake")]
pub mod testing;
mod warm_attach;

pub use bytes::format_bytes;
pub use container::ContainerCgroup;
pub use controller::{Controller, UnknownController};
pub use error::CgroupError;
pub use hierarchies::{CgroupMode, Hierarchies};
pub use root::{CgroupRoot, AGENT_LEAF, DEFAULT_CGROUP_ROOT};
