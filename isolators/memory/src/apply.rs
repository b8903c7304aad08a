//! Writing limits to the cgroup files, in an order the kernel accepts.

use std::io;

use berth_cgroups::{CgroupError, CgroupMode, ContainerCgroup, Controller};

const M: Controller = Controller::Memory;

/// v1 memory + swap limit: present when the kernel accounts swap.
pub(crate) const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// Sets the hard limit; on v1 also memory+swap, and on v2 no swap, so that
/// swap cannot be used to go past the limit.
pub(crate) fn set_limit(cgroup: &ContainerCgroup, limit: u64) -> Result<(), CgroupError> {
    let value = limit.to_string();
    match cgroup.mode() {
        CgroupMode::V1 => {
            if !cgroup.has_file(M, MEMSW) {
                return cgroup.write(M, "memory.limit_in_bytes", &value);
            }
            // The kernel keeps memsw.limit >= limit at all times and refuses
            // (EINVAL) a write that would break it: raise memsw first when
            // going up, lower the limit first when going down.
            let current = cgroup.read_u64(M, "memory.limit_in_bytes")?;
            if limit >= current {
                cgroup.write(M, MEMSW, &value)?;
                cgroup.write(M, "memory.limit_in_bytes", &value)
            } else {
                cgroup.write(M, "memory.limit_in_bytes", &value)?;
                cgroup.write(M, MEMSW, &value)
            }
        }
        CgroupMode::V2 => {
            cgroup.write(M, "memory.max", &value)?;
            if cgroup.has_file(M, "memory.swap.max") {
                cgroup.write(M, "memory.swap.max", "0")?;
            }
            Ok(())
        }
    }
}

/// Sets the soft limit: v1 `memory.soft_limit_in_bytes`, v2 `memory.low`
/// (best-effort protection, as runc maps a reservation).
pub(crate) fn set_reservation(
    cgroup: &ContainerCgroup,
    reservation: u64,
) -> Result<(), CgroupError> {
    let file = match cgroup.mode() {
        CgroupMode::V1 => "memory.soft_limit_in_bytes",
        CgroupMode::V2 => "memory.low",
    };
    cgroup.write(M, file, &reservation.to_string())
}

/// Current usage in bytes.
pub(crate) fn current_usage(cgroup: &ContainerCgroup) -> Result<u64, CgroupError> {
    match cgroup.mode() {
        CgroupMode::V1 => cgroup.read_u64(M, "memory.usage_in_bytes"),
        CgroupMode::V2 => cgroup.read_u64(M, "memory.current"),
    }
}

/// Peak usage in bytes (v2 kernels before 5.19 have no `memory.peak`: the
/// current usage is the best there is). Read directly, not after a check
/// that the file exists: a scrape reads it through its kept file.
pub(crate) fn peak_usage(cgroup: &ContainerCgroup) -> Result<u64, CgroupError> {
    match cgroup.mode() {
        CgroupMode::V1 => cgroup.read_u64(M, "memory.max_usage_in_bytes"),
        CgroupMode::V2 => match cgroup.read_u64(M, "memory.peak") {
            Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                cgroup.read_u64(M, "memory.current")
            }
            peak => peak,
        },
    }
}

/// The hard limit the kernel has, `None` when unlimited.
pub(crate) fn kernel_limit(cgroup: &ContainerCgroup) -> Result<Option<u64>, CgroupError> {
    match cgroup.mode() {
        CgroupMode::V1 => Ok(limited(cgroup.read_u64(M, "memory.limit_in_bytes")?)),
        CgroupMode::V2 => read_max(cgroup, "memory.max"),
    }
}

/// The soft limit the kernel has, `None` when there is none.
pub(crate) fn kernel_reservation(cgroup: &ContainerCgroup) -> Result<Option<u64>, CgroupError> {
    match cgroup.mode() {
        CgroupMode::V1 => Ok(limited(cgroup.read_u64(M, "memory.soft_limit_in_bytes")?)),
        CgroupMode::V2 => Ok(read_max(cgroup, "memory.low")?.filter(|low| *low > 0)),
    }
}

/// v1 shows "no limit" as the page counter maximum (2^63 - 1 rounded down
/// to a page, 9223372036854771712 with 4 KiB pages).
fn limited(value: u64) -> Option<u64> {
    (value < (1 << 62)).then_some(value)
}

fn read_max(cgroup: &ContainerCgroup, file: &str) -> Result<Option<u64>, CgroupError> {
    if cgroup.read(M, file)?.trim() == "max" {
        Ok(None)
    } else {
        cgroup.read_u64(M, file).map(Some)
    }
}
