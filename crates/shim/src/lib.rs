//! berth-shim: the per-container supervisor the agent execs (its protocol
//! with the agent is in berth-protocol).
//!
//! The agent starts `berth-shim`, whose first process forks and exits; the
//! forked monitor ([`supervisor`]) forks the container child ([`container`]),
//! (clones it into a new user namespace, see [`userns`], when the bundle has
//! one), which sets up namespaces, mounts and credentials and waits for the
//! agent's `go` before it execs the command. The monitor stays single-threaded
//! throughout, so forking and running Rust code in the child is safe.

mod agent;
pub mod attach_stdin;
mod capabilities;
mod cgroup_move;
mod clock;
mod container;
mod daemon;
mod device_nodes;
mod devices;
mod exec;
mod exec_output;
pub mod health;
mod init;
pub mod join;
mod keyring;
mod logs;
mod masks;
mod mounts;
mod namespaces;
pub mod overlay;
mod pool;
pub mod pty;
mod resident;
mod resolve;
mod rootfs;
mod spec;
mod stream_pump;
mod supervisor;
mod sync;
mod user;
mod userns;
// Secrets and config files (decision 0034).
mod files;

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{fork, ForkResult};

use agent::Agent;
use berth_protocol::{FailureKind, ShimArgs as Args, ShimMessage};

/// The shim's entry point; returns the process exit code.
pub fn main() -> i32 {
    if std::env::args_os().nth(1).is_some_and(|a| a == "exec") {
        return join::main(std::env::args_os().skip(2));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "health") {
        return crate::health::runner::main(std::env::args_os().skip(2));
    }
    let pool = std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == berth_protocol::handover::POOL_COMMAND);
    let args = match pool {
        true => None,
        false => match Args::parse(std::env::args_os().skip(1)) {
            Ok(args) => Some(args),
            Err(e) => {
                eprintln!("berth-shim: {e}");
                return 2;
            }
        },
    };
    // A vanished agent or a closed pipe must give EPIPE, not kill the
    // supervisor. The container child resets this before exec.
    // SAFETY: SIG_IGN installs no handler code.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) } {
        eprintln!("berth-shim: ignore SIGPIPE: {e}");
        return 1;
    }
    let Some(args) = args else {
        return pool::main();
    };
    // The first process exits at once, so the monitor is no child of the
    // agent: it outlives the agent and the agent just reaps this one.
    // SAFETY: single-threaded here.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            eprintln!("berth-shim: fork: {e}");
            return 1;
        }
    }
    let mut agent = Agent::from_sync_fd();
    if let Err(e) = daemon::detach(&args.state_dir) {
        let _ = agent.send(&ShimMessage::Failed {
            message: e.to_string(),
            kind: FailureKind::Setup,
        });
        return 1;
    }
    note(format_args!("shim for container {} started", args.id));
    supervisor::supervise(&args, agent)
}

/// A line in the shim's own log (stderr, `<state-dir>/shim.log` once
/// detached).
fn note(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    // One write for the whole line (stderr is unbuffered: `eprintln!`
    // writes each piece on its own, six syscalls on a launch's path).
    let line = format!(
        "{} {message}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}
