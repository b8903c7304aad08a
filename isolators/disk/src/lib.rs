//! berth's built-in `disk` isolator: a limit on the bytes a container keeps
//! in its sandbox (`resources.disk`), with three backends chosen in the
//! agent config (`[disk] backend`):
//!
//! | backend | limit | over the quota | needs |
//! | --- | --- | --- | --- |
//! | `du` | soft, checked every `interval` | the container is ended, reason `disk-limit` | nothing |
//! | `loop` | hard: the sandbox is an ext4 image of the quota's size | writes fail with ENOSPC | loop devices, `mkfs.ext4` (e2fsprogs) |
//! | `xfs` | hard: an XFS project quota on the sandbox | writes fail with EDQUOT | work dir on XFS mounted with `prjquota` |
//!
//! ```no_run
//! use std::time::Duration;
//! use berth_isolator_disk::{DiskBackend, DiskIsolator, DiskOptions};
//!
//! let disk = DiskIsolator::new(DiskOptions {
//!     backend: DiskBackend::Du,
//!     interval: Duration::from_secs(15),
//!     work_dir: "/var/lib/berth".into(),
//!     xfs_projects: 5000..=9999,
//! })?;
//! # Ok::<(), berth_isolator::IsolatorError>(())
//! ```

#![warn(missing_docs)]

mod copy;
pub mod du;
mod error;
pub mod image;
mod isolator;
pub mod loop_device;
pub mod loop_fs;
pub mod mountinfo;
mod quota;
mod resources;
mod watcher;
pub mod xfs;

pub use error::DiskError;
pub use isolator::{DiskBackend, DiskIsolator, DiskOptions};
pub use quota::{format_bytes, over_quota, quota_from, MAX_LOOP_QUOTA, MIN_QUOTA};
pub use resources::DiskResources;
