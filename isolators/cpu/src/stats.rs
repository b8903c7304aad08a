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
            let [user, system] =
                cgroup.read_keys(Controller::Cpuacct, "cpuacct.stat", ["user", "system"])?;
            usage.insert("user_seconds".into(), seconds(user.unwrap_or(0), hz));
            usage.insert("system_seconds".into(), seconds(system.unwrap_or(0), hz));
            let total_ns = cgroup.read_u64(Controller::Cpuacct, "cpuacct.usage")?;
            usage.insert("usage_seconds".into(), seconds(total_ns, 1_000_000_000));
            let [periods, throttled, throttled_ns] = cgroup.read_keys(
                Controller::Cpu,
                "cpu.stat",
                ["nr_periods", "nr_throttled", "throttled_time"],
            )?;
            usage.insert("nr_periods".into(), periods.unwrap_or(0).into());
            usage.insert("nr_throttled".into(), throttled.unwrap_or(0).into());
            usage.insert(
                "throttled_seconds".into(),
                seconds(throttled_ns.unwrap_or(0), 1_000_000_000),
            );
        }
        CgroupMode::V2 => {
            let keys = [
                "user_usec",
                "system_usec",
                "usage_usec",
                "nr_periods",
                "nr_throttled",
                "throttled_usec",
            ];
            let [user, system, total, periods, throttled, throttled_us] = cgroup
                .read_keys(Controller::Cpu, "cpu.stat", keys)?
                .map(|v| v.unwrap_or(0));
            usage.insert("user_seconds".into(), seconds(user, 1_000_000));
            usage.insert("system_seconds".into(), seconds(system, 1_000_000));
            usage.insert("usage_seconds".into(), seconds(total, 1_000_000));
            usage.insert("nr_periods".into(), periods.into());
            usage.insert("nr_throttled".into(), throttled.into());
            usage.insert("throttled_seconds".into(), seconds(throttled_us, 1_000_000));
        }
    }
    Ok(())
}
