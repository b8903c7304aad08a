use std::io;
use std::path::PathBuf;

use berth_isolator::IsolatorError;

/// What the devices isolator's own host operations fail with.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// `bpf(BPF_PROG_LOAD)` refused the generated program; `log` is the
    /// verifier's log.
    #[error("load the device filter program: {source}; verifier log: {log}")]
    Load {
        /// The kernel's error.
        #[source]
        source: io::Error,
        /// The verifier's log.
        log: String,
    },
    /// Opening the container's cgroup directory failed.
    #[error("open cgroup {}: {source}", path.display())]
    OpenCgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `bpf(BPF_PROG_ATTACH)` or `bpf(BPF_PROG_DETACH)` failed.
    #[error("attach the device filter to {}: {source}", path.display())]
    Attach {
        /// The cgroup directory.
        path: PathBuf,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
}

impl From<DevicesError> for IsolatorError {
    fn from(e: DevicesError) -> Self {
        IsolatorError::Other(format!("devices: {e}"))
    }
}
