//! Reading memory usage.

use berth_cgroups::{CgroupMode, ContainerCgroup, Controller};
use berth_isolator::{IsolatorError, Usage};

use crate::{apply, oom};

/// Adds the cgroup's memory statistics to `usage`.
pub(crate) fn read_usage(cgroup: &ContainerCgroup, usage: &mut Usage) -> Result<(), IsolatorError> {
    usage.insert("current_bytes".into(), apply::current_usage(cgroup)?.into());
    usage.insert("peak_bytes".into(), apply::peak_usage(cgroup)?.into());
    let stat = cgroup.read_keyed(Controller::Memory, "memory.stat")?;
    // v1 total_* include the cgroup's descendants, like v2's figures.
    let (rss, cache) = match cgroup.mode() {
        CgroupMode::V1 => ("total_rss", "total_cache"),
        CgroupMode::V2 => ("anon", "file"),
    };
    usage.insert(
        "rss_bytes".into(),
        stat.get(rss).copied().unwrap_or(0).into(),
    );
    usage.insert(
        "cache_bytes".into(),
        stat.get(cache).copied().unwrap_or(0).into(),
    );
    if let Some(limit) = apply::kernel_limit(cgroup)? {
        usage.insert("limit_bytes".into(), limit.into());
    }
    if let Some(soft) = apply::kernel_reservation(cgroup)? {
        usage.insert("soft_limit_bytes".into(), soft.into());
    }
    if let Some(kills) = oom::oom_kills(cgroup)? {
        usage.insert("oom_kills".into(), kills.into());
    }
    Ok(())
}
