//! `--init`: a tiny reaper as the container's pid 1, forked from the
//! container child after its confinement is complete (so it is confined
//! exactly as the command), with no extra binary in the image.
//!
//! The reaper blocks every signal and waits for them synchronously: blocked
//! signals are queued even for a pid namespace's init (the kernel drops only
//! signals whose disposition is the default), so TERM sent from outside
//! reaches it and is passed on to the command, which then has its own
//! default dispositions. Orphans re-parented to it are reaped. When the
//! command ends, the reaper exits with its code (128 + signal number when a
//! signal ended it, as tini does), which ends the pid namespace.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Forks: returns `report` in the child, which goes on to exec the command
/// with the signal mask it had; the parent becomes the reaper and never
/// returns. The parent closes `report` (the setup pipe to the monitor) so
/// that the monitor's wait for the exec sees only the child's copy.
pub fn fork_reaper(report: OwnedFd) -> Result<OwnedFd, (Errno, OwnedFd)> {
    let all = SigSet::all();
    let mut old = SigSet::empty();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut old)) {
        return Err((e, report));
    }
    // SAFETY: the container child is single-threaded (forked from the
    // single-threaded monitor).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => match sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None) {
            Ok(()) => Ok(report),
            Err(e) => Err((e, report)),
        },
        Ok(ForkResult::Parent { child }) => {
            drop(report);
            reap(child)
        }
        Err(e) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            Err((e, report))
        }
    }
}

/// The reaper's loop: never returns.
fn reap(command: Pid) -> ! {
    // Also a subreaper when the container shares a pid namespace.
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let waited = SigSet::all();
    loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap_all(command) {
                    // SAFETY: _exit is always safe to call.
                    unsafe { libc::_exit(code) }
                }
            }
            Ok(signal) => {
                let _ = kill(command, signal);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every child that has ended; the command's exit code once it has.
fn reap_all(command: Pid) -> Option<i32> {
    let mut ended = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return ended,
            Ok(WaitStatus::Exited(pid, code)) if pid == command => ended = Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                ended = Some(128 + signal as i32)
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(_) => return ended,
        }
    }
}
