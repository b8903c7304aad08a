//! Reading cpu usage from `cpuacct.*` and `cpu.stat`.

use berth_cgroups::{CgroupMode, ContainerCgroup, Controller};
use berth_isolator::{IsolatorError, Usage};
use serde_json::Value;

/// The kernel's `USER_HZ`, the unit of `cpuacct.stat`.
pub(crate) fn user_hz() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ is 100 on every Linux architecture that matters; a failed
    // sysconf must not turn into a division by zero.
    u64::try_from(hz).ok().filter(|hz| *hz > 0).unwrap_or(100)
}

fn seconds(value: u64, per_second: u64) -> Value {
    Value::from(value as f64 / per_second as f64)
}

/// Adds the cgroup's cpu statistics to `usage`.
pub(crate) fn read_usage(cgroup: &ContainerCgroup, usage: &mut Usage) -> Result<(), IsolatorError> {
    match cgroup.mode() {
        CgroupMode::V1 => {
            let hz = user_hz();
            let stat = cgroup.read_keyed(Controller::Cpuacct, "cpuacct.stat")?;
            let ticks = |key: &str| stat.get(key).copied().unwrap_or(0);
            usage.insert("user_seconds".into(), seconds(ticks("user"), hz));
            usage.insert("system_seconds".into(), seconds(ticks("system"), hz));
            let total_ns = cgroup.read_u64(Controller::Cpuacct, "cpuacct.usage")?;
            usage.insert("usage_seconds".into(), seconds(total_ns, 1_000_000_000));
            let cpu = cgroup.read_keyed(Controller::Cpu, "cpu.stat")?;
            let get = |key: &str| cpu.get(key).copied().unwrap_or(0);
            usage.insert("nr_periods".into(), get("nr_periods").into());
            usage.insert("nr_throttled".into(), get("nr_throttled").into());
            usage.insert(
                "throttled_seconds".into(),
                seconds(get("throttled_time"), 1_000_000_000),
            );
        }
        CgroupMode::V2 => {
            let stat = cgroup.read_keyed(Controller::Cpu, "cpu.stat")?;
            let get = |key: &str| stat.get(key).copied().unwrap_or(0);
            usage.insert("user_seconds".into(), seconds(get("user_usec"), 1_000_000));
            usage.insert(
                "system_seconds".into(),
                seconds(get("system_usec"), 1_000_000),
            );
            usage.insert(
                "usage_seconds".into(),
                seconds(get("usage_usec"), 1_000_000),
            );
            usage.insert("nr_periods".into(), get("nr_periods").into());
            usage.insert("nr_throttled".into(), get("nr_throttled").into());
            usage.insert(
                "throttled_seconds".into(),
                seconds(get("throttled_usec"), 1_000_000),
            );
        }
    }
    Ok(())
}
