//! Reading `/proc/self/mountinfo`: the parser lives once in berth-sys; this
//! module keeps the disk isolator's error type on the read.

pub use berth_sys::mountinfo::{holding, is_mount_point, parse, MountEntry, MOUNTINFO};

use crate::error::DiskError;

/// Reads this process's mount table.
pub fn read() -> Result<Vec<MountEntry>, DiskError> {
    berth_sys::mountinfo::read().map_err(|e| DiskError::io("read", MOUNTINFO, e))
}
