//! Reading memory usage.

use berth_cgroups::{CgroupMode, ContainerCgroup, Controller};
use berth_isolator::{IsolatorError, Usage};

use crate::{apply, oom};

/// Adds the cgroup's memory statistics to `usage`: the figures a scrape
/// shows ([`read_scrape`]) and the limits the kernel has.
pub(crate) fn read_usage(cgroup: &ContainerCgroup, usage: &mut Usage) -> Result<(), IsolatorError> {
    read_scrape(cgroup, usage)?;
    if let Some(limit) = apply::kernel_limit(cgroup)? {
        usage.insert("limit_bytes".into(), limit.into());
    }
    if let Some(soft) = apply::kernel_reservation(cgroup)? {
        usage.insert("soft_limit_bytes".into(), soft.into());
    }
    Ok(())
}

/// Adds the figures a metrics scrape shows: usage, peak, working set, rss,
/// cache and OOM kills (four files; the limits are known without reading).
pub(crate) fn read_scrape(
    cgroup: &ContainerCgroup,
    usage: &mut Usage,
) -> Result<(), IsolatorError> {
    let current = apply::current_usage(cgroup)?;
    usage.insert("current_bytes".into(), current.into());
    usage.insert("peak_bytes".into(), apply::peak_usage(cgroup)?.into());
    // v1 total_* include the cgroup's descendants, like v2's figures.
    let keys = match cgroup.mode() {
        CgroupMode::V1 => ["total_rss", "total_cache", "total_inactive_file"],
        CgroupMode::V2 => ["anon", "file", "inactive_file"],
    };
    let [rss, cache, inactive_file] = cgroup.read_keys(Controller::Memory, "memory.stat", keys)?;
    usage.insert(
        "working_set_bytes".into(),
        working_set(current, inactive_file).into(),
    );
    usage.insert("rss_bytes".into(), rss.unwrap_or(0).into());
    usage.insert("cache_bytes".into(), cache.unwrap_or(0).into());
    if let Some(kills) = oom::oom_kills(cgroup)? {
        usage.insert("oom_kills".into(), kills.into());
    }
    Ok(())
}

/// cAdvisor's working set: usage minus the inactive file cache (which the
/// kernel reclaims first), never below zero.
pub(crate) fn working_set(current: u64, inactive_file: Option<u64>) -> u64 {
    current.saturating_sub(inactive_file.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_set_is_usage_minus_inactive_file_floored_at_zero() {
        assert_eq!(working_set(10_000, Some(3_000)), 7_000);
        assert_eq!(working_set(10_000, None), 10_000);
        assert_eq!(working_set(1_000, Some(3_000)), 0);
    }
}
