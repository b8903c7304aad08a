//! berth's built-in `blkio` isolator.
//!
//! - `resources.blkio_weight` (10..1000) becomes the container's
//!   proportional share of disk time: v1 `blkio.weight` (CFQ) or
//!   `blkio.bfq.weight` (BFQ); v2 `io.weight` (iocost, converted to
//!   1..10000 by [`io_weight`]) or `io.bfq.weight`. Every weight file the
//!   host has is written, each weighing the devices its scheduler drives.
//!   Where the kernel has none, asking for a weight is refused
//!   ([`berth_isolator::IsolatorError::Unsupported`]) and `describe` says so.
//! - `resources.device_{read,write}_{bps,iops}` throttle one block device
//!   each: v1 `blkio.throttle.{read,write}_{bps,iops}_device`, v2 `io.max`.
//!   Devices are named by path (`/dev/vda`) or `MAJOR:MINOR` and must be
//!   whole disks: the kernel refuses a partition's number, and throttles I/O
//!   to a partition at its disk, so the disk's throttle covers all its
//!   partitions. Throttles apply to I/O the kernel issues for the cgroup:
//!   direct I/O and reads; buffered writes only where writeback is
//!   attributed to the cgroup (v2; not v1).
//! - Usage reports bytes and operations read and written per device.
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_cgroups::CgroupRoot;
//! use berth_isolator_blkio::BlkioIsolator;
//!
//! let root = Arc::new(CgroupRoot::detect("/berth")?);
//! let blkio = BlkioIsolator::new(root)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod device;
mod isolator;
mod limits;
mod resources;
mod stats;
mod throttle;
mod weight;

pub use device::{resolve, DeviceError, DeviceNumber, MalformedDeviceNumber, SYS_DEV_BLOCK};
pub use isolator::BlkioIsolator;
pub use limits::BlkioLimits;
pub use resources::{BlkioResources, DeviceLimit};
pub use stats::DeviceIo;
pub use throttle::{Throttle, Throttles};
pub use weight::{io_weight, validate_weight, WeightFile, MAX_WEIGHT, MIN_WEIGHT};
