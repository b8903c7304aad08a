//! A process identified beyond its pid (its start time), as the agent's
//! records, the health checker's identity file and the exec helper carry
//! it, and the pidfd operations that cannot be fooled by pid reuse.

use std::os::fd::OwnedFd;

use berth_sys::pidfd;
use berth_sys::proc_stat::{parse_start_time, parse_state, start_time};
use serde::{Deserialize, Serialize};

/// A process identified beyond its pid: the pid plus its start time in clock
/// ticks since boot (`/proc/<pid>/stat` field 22), so a recycled pid is not
/// mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessRef {
    /// Identifies the live process `pid`.
    pub fn of(pid: u32) -> Option<ProcessRef> {
        Some(ProcessRef {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Opens a pidfd for the process, checking that the pid still names the
    /// same process. Once open, the pidfd cannot be fooled by pid reuse.
    pub fn open(&self) -> Option<OwnedFd> {
        let fd = pidfd::open(self.pid as libc::pid_t).ok()?;
        // Checked after opening: if the start time still matches now, the
        // pidfd refers to our process (a reused pid would start later).
        (start_time(self.pid) == Some(self.start_time)).then_some(fd)
    }

    /// Whether the process still runs. A zombie has ended: only its exit
    /// status waits for its parent.
    pub fn is_alive(&self) -> bool {
        let Some(stat) = berth_sys::proc_stat::read(self.pid) else {
            return false;
        };
        parse_start_time(&stat) == Some(self.start_time) && parse_state(&stat) != Some('Z')
    }

    /// Waits until the process has ended, SIGKILLing it first (and again
    /// while it lingers) when `kill`. Returns whether it ended within
    /// `timeout`.
    pub fn end(&self, kill: bool, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        // Woken by the pidfd turning readable when the process exits, not by
        // polling /proc; without a pidfd the process is already gone.
        let pidfd = self.open();
        loop {
            if !self.is_alive() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            if kill {
                let _ = self.signal(libc::SIGKILL);
            }
            // Capped so that a process lingering after SIGKILL gets it again.
            let wait = (deadline - now).min(std::time::Duration::from_millis(100));
            match &pidfd {
                Some(fd) => {
                    pidfd::wait_exit(fd, wait);
                }
                None => std::thread::sleep(wait.min(std::time::Duration::from_millis(10))),
            }
        }
    }

    /// Sends `signal`; `Ok(false)` if the process is gone.
    pub fn signal(&self, signal: i32) -> std::io::Result<bool> {
        let Some(fd) = self.open() else {
            return Ok(false);
        };
        match pidfd::send_signal(&fd, signal) {
            Ok(()) => Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_found_and_a_wrong_start_time_is_not() {
        let me = ProcessRef::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        assert!(me.open().is_some());
        let impostor = ProcessRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
        assert!(impostor.open().is_none());
        assert!(!impostor.signal(0).unwrap());
        assert!(impostor.end(false, std::time::Duration::ZERO));
    }

    #[test]
    fn end_kills_and_reaps_nothing_it_does_not_own() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let process = ProcessRef::of(child.id()).unwrap();
        assert!(!process.end(false, std::time::Duration::from_millis(50)));
        // Killed, the child is a zombie until we reap it: ended all the same.
        assert!(process.end(true, std::time::Duration::from_secs(5)));
        child.wait().unwrap();
    }
}
