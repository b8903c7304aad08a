//! The disk isolator's own errors, and how they reach the agent.

use std::io;
use std::path::PathBuf;

use berth_isolator::IsolatorError;

/// What went wrong inside the disk isolator. Converted to an
/// [`IsolatorError`] at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A file operation on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The verb: `create`, `read`, `mount`, ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A helper program (`mkfs.ext4`) failed or could not be started.
    #[error("{program} {}: {message}", path.display())]
    Command {
        /// The program.
        program: &'static str,
        /// What it worked on.
        path: PathBuf,
        /// Its exit status and stderr, or why it did not start.
        message: String,
    },
    /// A loop device ioctl failed.
    #[error("loop device {device}: {op}: {source}")]
    Loop {
        /// The device (`/dev/loop3`, or `/dev/loop-control`).
        device: String,
        /// The ioctl.
        op: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// No filesystem image size gives the quota as usable space.
    #[error(
        "no ext4 image size gives {quota} usable bytes (last try: {usable} usable in {size} bytes)"
    )]
    Sizing {
        /// The quota asked for.
        quota: u64,
        /// The last image size tried.
        size: u64,
        /// The usable bytes it gave.
        usable: u64,
    },
    /// The work dir cannot hold XFS project quotas.
    #[error("work dir {} cannot use xfs project quotas: {reason}", path.display())]
    NoProjectQuota {
        /// The work dir.
        path: PathBuf,
        /// Why not: not XFS, not mounted with prjquota, ...
        reason: String,
    },
    /// Every project id of the configured range is in use.
    #[error("all xfs project ids {first}..={last} are in use")]
    ProjectsExhausted {
        /// The first id of the range.
        first: u32,
        /// The last id of the range.
        last: u32,
    },
    /// A quotactl call failed.
    #[error("quotactl {op} project {project} on {}: {source}", device.display())]
    Quota {
        /// `Q_XSETQLIM` or `Q_XGETQUOTA`.
        op: &'static str,
        /// The project id.
        project: u32,
        /// The block device of the filesystem.
        device: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

impl DiskError {
    /// Shorthand for [`DiskError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DiskError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<DiskError> for IsolatorError {
    fn from(e: DiskError) -> Self {
        match e {
            DiskError::Io { op, path, source } => IsolatorError::Io { op, path, source },
            DiskError::NoProjectQuota { .. } => IsolatorError::Unsupported {
                message: e.to_string(),
            },
            DiskError::ProjectsExhausted { .. } => IsolatorError::Conflict {
                message: e.to_string(),
            },
            other => IsolatorError::Other(format!("disk: {other}")),
        }
    }
}
