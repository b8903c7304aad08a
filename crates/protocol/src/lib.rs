//! Everything that crosses a process or disk boundary between berth's
//! agent, its shim and its CLI, each type written once with its reader and
//! its writer side by side (decision 0036):
//!
//! * [`shim_args`]: the shim's command line, built by the agent
//!   ([`ShimArgs::to_args`]) and parsed by the shim ([`ShimArgs::parse`]);
//! * [`messages`]: the JSON lines on the shim's socket, with a typed
//!   [`FailureKind`] deciding whether a failed launch is the caller's fault;
//! * [`helper_args`]: the command lines of `berth-shim exec` and
//!   `berth-shim health`, the same way;
//! * [`exit`]: the exit record the shim leaves in its state dir;
//! * [`logs`]: the log file format (segment and index names, index entries,
//!   the counters file), the shim writing it and the agent reading it.
//!
//! Nothing here knows the agent's or the shim's internals; both depend on
//! this crate, never on each other.

pub mod exit;
pub mod helper_args;
pub mod log_settings;
pub mod logs;
pub mod messages;
pub mod shim_args;

pub use exit::ExitRecord;
pub use helper_args::{ExecArgs, HealthArgs};
pub use log_settings::{LogMode, LogSettings};
pub use messages::{FailureKind, ShimMessage};
pub use shim_args::{ArgsError, ShimArgs};
