//! Process file descriptors (pidfd_open(2), pidfd_send_signal(2)): a handle
//! on one process that a recycled pid cannot redirect.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Opens a pidfd for `pid` (which must exist now; nothing checks that it is
/// the process the caller means: compare [`crate::proc_stat::start_time`]
/// after opening).
pub fn open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor from the kernel that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` to the process of `pidfd`. A process that has exited (a
/// zombie or reaped) is `ESRCH`.
pub fn send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(pidfd, sig, info=NULL, flags=0): a valid fd
    // borrowed for the call and a null siginfo, which the kernel allows.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Blocks until `pidfd` is readable (its process exited) or `timeout` has
/// passed; returns whether it is readable. An interrupted poll returns
/// `false` early.
pub fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut pollfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: poll on one valid, initialised pollfd that outlives the call.
    let rc = unsafe { libc::poll(&mut pollfd, 1, millis) };
    rc > 0 && pollfd.revents & libc::POLLIN != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_reaches_a_live_child_and_poll_sees_it_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let fd = open(child.id() as libc::pid_t).unwrap();
        assert!(!wait_exit(&fd, Duration::from_millis(10)));
        send_signal(&fd, libc::SIGKILL).unwrap();
        assert!(wait_exit(&fd, Duration::from_secs(10)));
        child.wait().unwrap();
    }

    #[test]
    fn signal_to_an_exited_child_is_an_error() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let fd = open(child.id() as libc::pid_t).unwrap();
        child.wait().unwrap();
        let err = send_signal(&fd, libc::SIGTERM).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn open_of_no_process_is_an_error() {
        // pid_max is at most 2^22: this pid cannot exist.
        assert!(open(1 << 23).is_err());
    }
}
