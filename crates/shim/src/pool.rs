//! `berth-shim pool`: a shim started ahead of any launch (decision 0043).
//! It detaches like any shim, says [`ShimMessage::Idle`], and waits on its
//! socket for one handover (`berth_protocol::handover`); then it is the
//! shim of that container, exactly as if it had been started with the
//! handover's arguments. If the agent closes the socket first (it stopped
//! or shrank its pool), it exits having done nothing. Until its handover it
//! may be asked for successors: forks of itself, each an idle shim on a new
//! socket (decision 0045).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use berth_protocol::handover::{self, HandoverError, Received};
use berth_protocol::messages::SYNC_FD;
use berth_protocol::shim_args::FILES_FD_BASE;
use berth_protocol::{FailureKind, ShimMessage};
use nix::unistd::{fork, ForkResult};

use super::agent::Agent;
use super::container::{close_range, exit};
use super::{daemon, note, supervisor};

/// Where received descriptors wait before they take their numbers: above
/// every number they can end up at.
const PARKED_FDS: i32 = FILES_FD_BASE + berth_sys::fd_passing::MAX_FDS as i32;

/// The idle shim's entry point (SIGPIPE already ignored); returns the
/// process exit code.
pub fn main() -> i32 {
    // Nothing the agent's process may have left inheritable (a jobserver
    // pipe, a log file) stays open in a shim that will serve a container
    // the agent does not know yet: only stdio and the agent socket.
    if let Err(e) = close_range(SYNC_FD as libc::c_uint + 1, 0) {
        eprintln!("berth-shim pool: close_range: {e}");
        return 1;
    }
    // As a started shim: the first process exits at once, so the monitor is
    // no child of the agent.
    // SAFETY: single-threaded here.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            eprintln!("berth-shim pool: fork: {e}");
            return 1;
        }
    }
    serve()
}

/// The detached idle shim on the agent's socket (fd [`SYNC_FD`]): says
/// idle, makes successors when asked, and serves the container handed to
/// it; returns the exit code.
fn serve() -> i32 {
    let mut agent = Agent::from_sync_fd();
    let fail = |agent: &mut Agent, message: String| {
        let _ = agent.send(&ShimMessage::Failed {
            message,
            kind: FailureKind::Setup,
        });
        1
    };
    if let Err(e) = daemon::leave_session() {
        return fail(&mut agent, e.to_string());
    }
    let Some(socket) = agent.fd().map(|fd| fd.as_raw_fd()) else {
        // Started by hand, with nobody to hand it a container.
        return 2;
    };
    let shim_pid = std::process::id();
    if agent.send(&ShimMessage::Idle { shim_pid }).is_err() {
        return 0;
    }
    // SAFETY: the agent's socket stays open (owned by `agent`) while this
    // borrow is used.
    let socket = unsafe { BorrowedFd::borrow_raw(socket) };
    let (args, fds) = loop {
        match handover::receive(socket) {
            Ok(Some(Received::Launch(args, fds))) => break (args, fds),
            Ok(Some(Received::Successor(theirs))) => {
                // This shim has served nobody: its successor, a copy of it
                // on a new socket, has nothing of any container either.
                // A failure is the agent's to see (no idle message comes).
                let _ = start_successor(theirs);
            }
            Ok(None) => return 0,
            Err(HandoverError::Io(e)) => return fail(&mut agent, format!("handover: {e}")),
            Err(e) => return fail(&mut agent, e.to_string()),
        }
    };
    berth_sys::launch_marks::mark("shim: handover received");
    if let Err(e) = place_files(fds) {
        return fail(&mut agent, format!("handover: place prepared mounts: {e}"));
    }
    if let Err(e) = daemon::log_to(&args.state_dir) {
        return fail(&mut agent, e.to_string());
    }
    note(format_args!(
        "shim for container {} started (idle since its start)",
        args.id
    ));
    berth_sys::launch_marks::mark("shim: logs to its state dir");
    supervisor::supervise(&args, agent)
}

/// Forks a successor on `socket` (decision 0045): a child that forks the
/// successor and exits at once (reaped here), so the successor is no child
/// of this shim, which will supervise a container. The successor keeps
/// stdio and `socket` (as [`SYNC_FD`]) only, and serves like this shim.
fn start_successor(socket: OwnedFd) -> nix::Result<()> {
    // SAFETY: an idle shim is single-threaded.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            drop(socket);
            nix::sys::wait::waitpid(child, None)?;
            Ok(())
        }
        ForkResult::Child => {
            // SAFETY: single-threaded (a fork's child).
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {}
                // The middle process: done either way, running nothing of
                // this process's on the way out.
                _ => exit(0),
            }
            // The successor: its socket becomes SYNC_FD (replacing this
            // shim's, which it must not hold), and nothing else stays open.
            // SAFETY: dup2 onto SYNC_FD, whose old descriptor nothing in
            // this process uses from here on (the frames above are never
            // returned to).
            if unsafe { libc::dup2(socket.as_raw_fd(), SYNC_FD) } < 0 {
                exit(1);
            }
            if close_range(SYNC_FD as libc::c_uint + 1, 0).is_err() {
                exit(1);
            }
            // `socket`'s number is closed already.
            std::mem::forget(socket);
            // It ends as an idle shim's `main` does, not with `_exit`.
            std::process::exit(serve())
        }
    }
}

/// Gives the `i`-th received descriptor the number [`FILES_FD_BASE`]` + i`,
/// where a started shim finds its prepared mounts, inheritable like them.
fn place_files(fds: Vec<OwnedFd>) -> std::io::Result<()> {
    // First all out of the way (a received one may sit on a target number),
    // then each onto its number.
    let mut parked = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: F_DUPFD_CLOEXEC returns a fresh descriptor, owned below.
        let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PARKED_FDS) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `copy` is ours alone.
        parked.push(unsafe { OwnedFd::from_raw_fd(copy) });
    }
    for (i, fd) in parked.iter().enumerate() {
        let target = FILES_FD_BASE + i as i32;
        debug_assert_ne!(target, SYNC_FD);
        // SAFETY: dup2 onto a number this process reserves for prepared
        // mounts; it clears FD_CLOEXEC there, as for a started shim. The
        // target is deliberately left open (the supervisor takes it by
        // number).
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
