//! The one place tests read a container's cgroup files, knowing the v1 and
//! v2 names: values come back in the form the v1 file has, so a test states
//! one expectation for both (cpu weight excepted: see [`cpu_shares`]).

use super::Agent;
use berth_cgroups::{CgroupMode, Hierarchies};

/// A cgroup value a test checks.
#[derive(Debug, Clone, Copy)]
pub enum Knob {
    /// v1 `cpu.shares`; v2 `cpu.weight` (compare with [`cpu_shares`]).
    CpuShares,
    /// v1 `cpu.cfs_quota_us`; v2 the first field of `cpu.max` (`max` is -1).
    CpuQuota,
    /// v1 `memory.limit_in_bytes`; v2 `memory.max`.
    MemoryLimit,
    /// v1 `blkio.throttle.write_bps_device` (`MAJ:MIN BYTES` lines); v2 the
    /// `wbps=` of each `io.max` line, in that form.
    WriteBpsDevice,
    /// `pids.max` on both.
    PidsMax,
}

/// This host's cgroup mode.
pub fn mode() -> CgroupMode {
    Hierarchies::detect()
        .expect("detect the cgroup layout")
        .mode()
}

/// `"v1"` or `"v2"`, as the agent's info names it.
pub fn mode_name() -> &'static str {
    match mode() {
        CgroupMode::V1 => "v1",
        CgroupMode::V2 => "v2",
    }
}

/// What [`Knob::CpuShares`] reads for `shares` on this host.
pub fn cpu_shares(shares: u64) -> String {
    match mode() {
        CgroupMode::V1 => shares.to_string(),
        CgroupMode::V2 => berth_isolator_cpu::shares_to_weight(shares).to_string(),
    }
}

/// The (trimmed) value of `knob` for container `id` of `agent`.
///
/// # Panics
///
/// If the file cannot be read; the message names it.
pub fn read(agent: &Agent, id: &str, knob: Knob) -> String {
    let v2 = mode() == CgroupMode::V2;
    let (controller, file) = match (knob, v2) {
        (Knob::CpuShares, false) => ("cpu", "cpu.shares"),
        (Knob::CpuShares, true) => ("cpu", "cpu.weight"),
        (Knob::CpuQuota, false) => ("cpu", "cpu.cfs_quota_us"),
        (Knob::CpuQuota, true) => ("cpu", "cpu.max"),
        (Knob::MemoryLimit, false) => ("memory", "memory.limit_in_bytes"),
        (Knob::MemoryLimit, true) => ("memory", "memory.max"),
        (Knob::WriteBpsDevice, false) => ("blkio", "blkio.throttle.write_bps_device"),
        (Knob::WriteBpsDevice, true) => ("blkio", "io.max"),
        (Knob::PidsMax, _) => ("pids", "pids.max"),
    };
    let path = agent.cgroup_dir(controller, Some(id)).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.trim();
    match (knob, v2) {
        (Knob::CpuQuota, true) => match text.split_whitespace().next() {
            Some("max") => "-1".to_string(),
            other => other.unwrap_or_default().to_string(),
        },
        (Knob::WriteBpsDevice, true) => text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let device = fields.next()?;
                let wbps = fields.find_map(|f| f.strip_prefix("wbps="))?;
                (wbps != "max").then(|| format!("{device} {wbps}"))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => text.to_string(),
    }
}
