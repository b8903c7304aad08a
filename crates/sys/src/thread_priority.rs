//! A thread's CPU priority (its nice value), lowered for work that may
//! wait while latency-critical work runs first: after a container's end
//! is told, its final figures and cleanup yield the CPU to the waiters
//! being answered (decision 0052).

use std::io;

/// The calling thread's id.
fn thread_id() -> libc::id_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() as libc::id_t }
}

/// The calling thread's nice value.
fn nice_of(tid: libc::id_t) -> io::Result<i32> {
    // getpriority returns the nice value itself, and -1 both for nice -1
    // and for an error: errno tells them apart.
    // SAFETY: __errno_location points at this thread's errno.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain syscall on this thread's id.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    if nice == -1 && io::Error::last_os_error().raw_os_error() != Some(0) {
        return Err(io::Error::last_os_error());
    }
    Ok(nice)
}

fn set_nice(tid: libc::id_t, nice: i32) -> io::Result<()> {
    // SAFETY: plain syscall on this thread's id; on Linux PRIO_PROCESS
    // with a thread id sets that thread's nice value alone.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread at a lower priority until dropped, when its nice
/// value is set back (which needs `CAP_SYS_NICE` unless the thread's
/// `RLIMIT_NICE` allows it; the agent, root, has it).
pub struct Lowered {
    tid: libc::id_t,
    before: i32,
}

impl Lowered {
    /// Adds `by` to the calling thread's nice value (at most 19).
    pub fn by(by: i32) -> io::Result<Lowered> {
        let tid = thread_id();
        let before = nice_of(tid)?;
        set_nice(tid, (before + by).min(19))?;
        Ok(Lowered { tid, before })
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        // A drop on another thread would set that one's: never, as the
        // guard lives on the stack of the thread it lowered.
        debug_assert_eq!(self.tid, thread_id());
        let _ = set_nice(self.tid, self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_thread_is_set_back_and_others_are_not_touched() {
        // On a thread of its own: the test harness's may run others.
        std::thread::spawn(|| {
            let tid = thread_id();
            let before = nice_of(tid).unwrap();
            let main_nice = nice_of(std::process::id() as libc::id_t).unwrap();
            {
                let _lowered = Lowered::by(5).unwrap();
                assert_eq!(nice_of(tid).unwrap(), (before + 5).min(19));
                // The process's first thread keeps its own.
                assert_eq!(
                    nice_of(std::process::id() as libc::id_t).unwrap(),
                    main_nice
                );
            }
            // Setting it back needs CAP_SYS_NICE (root); without it the
            // thread stays lowered, which is all an unprivileged run can
            // check.
            let after = nice_of(tid).unwrap();
            // SAFETY: geteuid takes no arguments and cannot fail.
            let privileged = unsafe { libc::geteuid() } == 0;
            if privileged {
                assert_eq!(after, before);
            } else {
                assert!(after >= before);
            }
        })
        .join()
        .unwrap();
    }
}
