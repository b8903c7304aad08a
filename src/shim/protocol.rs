//! What the agent and `berth-shim` say to each other.
//!
//! The agent execs `berth-shim --id ID --bundle DIR --state-dir DIR --log-dir DIR`
//! with fd 3 one end of a unix stream socket. The shim forks and its first
//! process exits at once, so the supervisor is no child of the agent and
//! outlives it. Then, over fd 3, one JSON object a line:
//!
//! 0. shim → agent [`ShimMessage::Forked`] once the container process exists,
//!    while it still sets itself up: the agent isolates it meanwhile.
//! 1. shim → agent [`ShimMessage::Ready`] once the container process is set up
//!    (namespaces, mounts, user) and waits to exec; or [`ShimMessage::Failed`].
//! 2. agent → shim the line [`GO`] after the isolators placed `pid` (and it is ready). If the
//!    socket closes instead, the shim kills the container and records a
//!    launch failure.
//! 3. shim → agent [`ShimMessage::Running`] once the command was exec'd, or
//!    [`ShimMessage::Failed`] (for example an unknown executable). The shim
//!    then closes fd 3.
//!
//! When the container has ended and its output is drained, the shim writes
//! [`ExitRecord`] to `<state-dir>/exit.json` (temp file + rename) and exits.
//! The agent watches the shim's pid (a pidfd) to learn of it.

use serde::{Deserialize, Serialize};

/// The agent's go-ahead line.
pub const GO: &str = "go";

/// The file in the state dir that records the container's end.
pub const EXIT_FILE: &str = "exit.json";

/// The file in the state dir where the shim logs its own trouble.
pub const SHIM_LOG_FILE: &str = "shim.log";

/// The most of an exec's stdout, and of its stderr, kept in its exec dir:
/// the exec helper writes no more, the agent reads no more.
pub const EXEC_OUTPUT_CAP: u64 = 4 << 20;

/// The fd on which the shim finds its socket to the agent.
pub const SYNC_FD: i32 = 3;

/// A message from the shim to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShimMessage {
    /// The container process exists and waits for [`GO`].
    Ready {
        /// The supervisor's pid.
        shim_pid: u32,
        /// The container's first process, as the host sees it.
        pid: u32,
    },
    /// The command was exec'd.
    Running,
    /// The launch failed; the shim cleans up and exits.
    Failed { message: String },
    /// The container process was forked and is still setting itself up
    /// (sent before [`ShimMessage::Ready`]): the agent isolates it (moves
    /// it into its cgroups) meanwhile, so the kernel's cgroup attach,
    /// often the slowest step of a launch, overlaps the setup (decision
    /// 0035). A shim without it sends only `Ready`.
    Forked {
        /// The supervisor's pid.
        shim_pid: u32,
        /// The container's first process, as the host sees it.
        pid: u32,
    },
}

/// How the container ended, as written by the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// The signal number, when a signal killed the process.
    pub signal: Option<i32>,
    /// When the command was exec'd (RFC 3339), if it was.
    pub started_at: Option<String>,
    /// When the shim saw the end (RFC 3339).
    pub finished_at: String,
    /// Why the launch failed, if it did.
    pub error: Option<String>,
}
