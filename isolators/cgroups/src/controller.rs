use std::fmt;
use std::str::FromStr;

use crate::{CgroupError, CgroupMode};

/// A cgroup controller, named as on cgroup v1.
///
/// On cgroup v2 every controller lives in the one unified directory; the v1
/// names map to the v2 controller that serves them (`cpuacct` to `cpu`,
/// `blkio` to `io`), and some have no v2 counterpart at all (`net_cls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// `cpu`: shares and CFS bandwidth.
    Cpu,
    /// `cpuacct`: cpu accounting (part of `cpu` on v2).
    Cpuacct,
    /// `cpuset`: cpu and memory node placement.
    Cpuset,
    /// `memory`.
    Memory,
    /// `blkio` (`io` on v2).
    Blkio,
    /// `pids`.
    Pids,
    /// `freezer` (`cgroup.freeze` of the core on v2).
    Freezer,
    /// `devices` (an eBPF program on v2).
    Devices,
    /// `net_cls` (no v2 counterpart).
    NetCls,
    /// `net_prio` (no v2 counterpart).
    NetPrio,
    /// `hugetlb`.
    Hugetlb,
    /// `perf_event` (always on for v2).
    PerfEvent,
}

/// How a controller shows up on cgroup v2.
pub(crate) enum OnV2 {
    /// A controller enabled through `cgroup.subtree_control` under this name.
    Enable(&'static str),
    /// Always present, nothing to enable.
    Implicit,
    /// Not available on v2.
    Missing,
}

impl Controller {
    /// All controllers, in a stable order.
    pub const ALL: [Controller; 12] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Memory,
        Controller::Blkio,
        Controller::Pids,
        Controller::Freezer,
        Controller::Devices,
        Controller::NetCls,
        Controller::NetPrio,
        Controller::Hugetlb,
        Controller::PerfEvent,
    ];

    /// The cgroup v1 name (`cpu`, `net_cls`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Memory => "memory",
            Controller::Blkio => "blkio",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
            Controller::Devices => "devices",
            Controller::NetCls => "net_cls",
            Controller::NetPrio => "net_prio",
            Controller::Hugetlb => "hugetlb",
            Controller::PerfEvent => "perf_event",
        }
    }

    pub(crate) fn on_v2(self) -> OnV2 {
        match self {
            Controller::Cpu | Controller::Cpuacct => OnV2::Enable("cpu"),
            Controller::Cpuset => OnV2::Enable("cpuset"),
            Controller::Memory => OnV2::Enable("memory"),
            Controller::Blkio => OnV2::Enable("io"),
            Controller::Pids => OnV2::Enable("pids"),
            Controller::Hugetlb => OnV2::Enable("hugetlb"),
            Controller::Freezer | Controller::Devices | Controller::PerfEvent => OnV2::Implicit,
            Controller::NetCls | Controller::NetPrio => OnV2::Missing,
        }
    }

    /// The error for a controller that has no directory in `mode`.
    pub(crate) fn missing(self, mode: CgroupMode) -> CgroupError {
        match mode {
            CgroupMode::V1 => CgroupError::NotMounted { controller: self },
            CgroupMode::V2 => CgroupError::NotOnV2 { controller: self },
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a name that is not a known controller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cgroup controller {0:?}")]
pub struct UnknownController(pub String);

impl FromStr for Controller {
    type Err = UnknownController;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Controller::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownController(s.to_string()))
    }
}
