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
//! * [`bundle`]: what the agent puts in a container's bundle for the shim
//!   beyond the OCI spec (annotations, the overlay root layout, names);
//! * [`exit`]: the exit record the shim leaves in its state dir;
//! * [`handover`]: the launch an idle shim (started ahead) waits for;
//! * [`exec_request`]: the exec request the exec helper reads, and [`exec_request::User`];
//! * [`health`]: health check requests and results (`health.json`);
//! * [`process`]: [`process::ProcessRef`], a process identified beyond its pid;
//! * [`root_mount`]: the agent's detached root mount, sent to the container child;
//! * [`streams`]: the channels and frames of interactive streams between
//!   the agent and a process's helper;
//! * [`logs`]: the log file format (segment and index names, index entries,
//!   the counters file), the shim writing it and the agent reading it.
//!
//! Nothing here knows the agent's or the shim's internals; both depend on
//! this crate, never on each other.

pub mod bundle;
pub mod exec_request;
pub mod exit;
pub mod handover;
pub mod health;
pub mod helper_args;
pub mod log_settings;
pub mod logs;
pub mod messages;
pub mod process;
pub mod root_mount;
pub mod shim_args;
pub mod streams;

pub use exit::ExitRecord;
pub use helper_args::{ExecArgs, HealthArgs};
pub use log_settings::{LogMode, LogSettings};
pub use messages::{FailureKind, ShimMessage};
pub use shim_args::{ArgsError, ShimArgs};
