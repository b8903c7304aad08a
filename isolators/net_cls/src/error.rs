use std::io;
use std::path::PathBuf;

use berth_cgroups::CgroupError;
use berth_isolator::IsolatorError;

use crate::ClassId;

/// The request field that names a specific secondary handle.
pub(crate) const HANDLE_FIELD: &str = "resources.net_cls_handle";

/// What can go wrong in the net_cls isolator. Converts into
/// [`IsolatorError`] so that the agent maps each to the right API status.
#[derive(Debug, thiserror::Error)]
pub enum NetClsError {
    /// The host uses cgroup v2, which has no net_cls controller.
    #[error(
        "net_cls is not available on cgroup v2; classify traffic with an nftables \
         `socket cgroupv2` rule instead (see docs/decisions/0005-net-cls-on-cgroup-v2.md)"
    )]
    CgroupV2,
    /// The kernel has no net_cls controller (or it is disabled).
    #[error("net_cls is not available: the kernel does not list it as enabled in {}", path.display())]
    NotInKernel {
        /// `/proc/cgroups`.
        path: PathBuf,
    },
    /// The agent's handle settings are unusable.
    #[error("invalid net_cls handles: {reason}")]
    InvalidSettings {
        /// What is wrong.
        reason: String,
    },
    /// The directory where the hierarchy would be mounted is in the way.
    #[error("mount point {} for the net_cls hierarchy: {reason}", path.display())]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Mounting the net_cls hierarchy failed.
    #[error("mount -t cgroup -o {options} cgroup {}: {source}", path.display())]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The mount options (the controllers).
        options: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The hierarchy was mounted but is still not seen in mountinfo.
    #[error("net_cls hierarchy mounted at {} is not listed in /proc/self/mountinfo", path.display())]
    NotDetected {
        /// The mount point.
        path: PathBuf,
    },
    /// Taking the lock that serializes mounting failed.
    #[error("lock {}: {source}", path.display())]
    Lock {
        /// The locked directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A specific handle was asked for outside the configured range.
    #[error("secondary handle {value} is outside the agent's range {min}..={max}")]
    OutOfRange {
        /// The handle asked for.
        value: u32,
        /// The smallest handle berth may use.
        min: u16,
        /// The largest handle berth may use.
        max: u16,
    },
    /// A specific handle was asked for that another container holds.
    #[error("net_cls handle {} (classid {classid}) is in use by {holder}", classid.secondary)]
    InUse {
        /// The class id that is taken.
        classid: ClassId,
        /// Who holds it: `container <id>` or a leftover cgroup.
        holder: String,
    },
    /// Every handle of the range is taken.
    #[error(
        "no free net_cls handle: all {count} secondary handles {min}..={max} under primary {primary:#06X} are in use"
    )]
    Exhausted {
        /// The primary handle.
        primary: u16,
        /// The smallest handle berth may use.
        min: u16,
        /// The largest handle berth may use.
        max: u16,
        /// How many handles the range has.
        count: u32,
    },
    /// The container already holds a handle (a repeated prepare).
    #[error("container {id} already holds net_cls classid {classid}")]
    AlreadyPrepared {
        /// The container.
        id: String,
        /// The class id it holds.
        classid: ClassId,
    },
    /// Reading or writing the persisted handle failed.
    #[error("{op} {}: {source}", path.display())]
    State {
        /// `read`, `write`, `rename`, ...
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The persisted handle file does not hold what berth writes.
    #[error("parse {}: unexpected content {value:?}: {reason}", path.display())]
    StateParse {
        /// The file.
        path: PathBuf,
        /// The content.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

impl From<NetClsError> for IsolatorError {
    fn from(e: NetClsError) -> Self {
        match e {
            NetClsError::CgroupV2 | NetClsError::NotInKernel { .. } => IsolatorError::Unsupported {
                message: e.to_string(),
            },
            NetClsError::OutOfRange { .. } => IsolatorError::invalid(HANDLE_FIELD, e.to_string()),
            NetClsError::InUse { .. }
            | NetClsError::Exhausted { .. }
            | NetClsError::AlreadyPrepared { .. } => IsolatorError::Conflict {
                message: e.to_string(),
            },
            NetClsError::Cgroup(e) => e.into(),
            NetClsError::State { op, path, source } => IsolatorError::io(op, path, source),
            other => IsolatorError::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_the_api_statuses() {
        let invalid: IsolatorError = NetClsError::OutOfRange {
            value: 0x10000,
            min: 1,
            max: 0xFFFF,
        }
        .into();
        assert!(
            matches!(&invalid, IsolatorError::InvalidConfig { field, message }
                if field == HANDLE_FIELD && message.contains("65536") && message.contains("1..=65535")),
            "{invalid}"
        );
        let exhausted: IsolatorError = NetClsError::Exhausted {
            primary: 0x10,
            min: 1,
            max: 2,
            count: 2,
        }
        .into();
        assert_eq!(
            exhausted.to_string(),
            "no free net_cls handle: all 2 secondary handles 1..=2 under primary 0x0010 are in use"
        );
        assert!(matches!(exhausted, IsolatorError::Conflict { .. }));
        let v2: IsolatorError = NetClsError::CgroupV2.into();
        assert!(matches!(v2, IsolatorError::Unsupported { .. }));
        assert!(v2
            .to_string()
            .contains("net_cls is not available on cgroup v2"));
    }
}
