//! The cgroup v1 device filter: `devices.deny` and `devices.allow`.

use berth_cgroups::{CgroupError, ContainerCgroup, Controller};

use crate::rule::DeviceRule;

/// Denies every device, then allows each rule, one write per rule (the
/// kernel parses one rule per write) through one open of `devices.allow`.
/// A new cgroup inherits its parent's list; `a` empties it and makes the
/// default deny.
pub(crate) fn apply(cgroup: &ContainerCgroup, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    cgroup.write(Controller::Devices, "devices.deny", "a")?;
    let lines: Vec<String> = rules.iter().map(DeviceRule::v1_line).collect();
    cgroup.write_each(Controller::Devices, "devices.allow", &lines)
}
