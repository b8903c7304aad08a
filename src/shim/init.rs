//! `--init`: the container's first process as a tiny reaper, from the
//! shim's own code (nothing is added to the container's root).
//!
//! A pid namespace's first process gets only the signals it has handlers
//! for, and inherits every orphan in the container. A command that was not
//! written to be an init ignores `TERM` and leaves zombies behind. With
//! `--init`, the first process forks right before the command's `execve`:
//! the child becomes the command, and the first process, already confined
//! exactly as the command (namespaces, cgroups, capabilities, seccomp),
//! forwards every signal it gets to it, reaps every child, and exits with
//! the command's status (128 + n when signal n ended it).

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Forks: returns in the child, which goes on to exec the command; the
/// parent stays the reaper until the command ends, and never returns.
/// `go` and `report` are the setup pipes: the reaper closes its copies, so
/// the monitor sees the report pipe close when the command's `execve`
/// succeeds, as without `--init`.
pub fn fork_reaper(go: OwnedFd, report: &OwnedFd) {
    // Blocked before the fork, so that no signal is lost between the fork
    // and the reaper's first wait; the child unblocks them again.
    let all = SigSet::all();
    let mut previous = SigSet::empty();
    if sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut previous)).is_err() {
        // Without blocked signals the reaper could miss some; run the
        // command as the first process instead, as without --init.
        return;
    }
    // SAFETY: the container child is single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(go);
            // SAFETY: this process's own copy of the report pipe, never used
            // here again (the reaper does not return).
            unsafe { libc::close(report.as_raw_fd()) };
            reap(child, &all);
        }
        Err(_) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
        }
    }
}

/// Forwards signals to `command` and reaps children until it has ended.
fn reap(command: Pid, signals: &SigSet) -> ! {
    loop {
        let signal = match signals.wait() {
            Ok(signal) => signal,
            Err(_) => continue,
        };
        if signal != Signal::SIGCHLD {
            // The command may be gone already: nothing to forward to.
            let _ = kill(command, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == command => exit(code),
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                    exit(128 + signal as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}
