//! Timestamps of a launch's steps in the agent, the shim and the
//! container's process, for `benches/launch_timeline.sh` (decision 0051).
//!
//! Built in only with the `launch-marks` feature; without it [`mark`] is
//! empty and inlined away. With it, each call appends a line
//! `<pid> <CLOCK_MONOTONIC in µs> <label>` to the file named by
//! `BERTH_LAUNCH_MARKS` in the process's environment (none: nothing is
//! written). The file is opened at a process's first mark, `O_APPEND`
//! and close-on-exec: a forked child writes through its parent's
//! descriptor (the container's process even after its pivot), and no
//! command runs with it.
//!
//! ```
//! berth_sys::launch_marks::mark("A-api");
//! ```

/// Appends `label` with the time to the marks file (a no-op without the
/// `launch-marks` feature).
#[inline(always)]
pub fn mark(label: &str) {
    #[cfg(feature = "launch-marks")]
    write(label);
    #[cfg(not(feature = "launch-marks"))]
    let _ = label;
}

#[cfg(feature = "launch-marks")]
fn write(label: &str) {
    use std::sync::atomic::{AtomicI32, Ordering};
    // -1: not opened yet; -2: no file named.
    static FD: AtomicI32 = AtomicI32::new(-1);
    let mut fd = FD.load(Ordering::Relaxed);
    if fd == -1 {
        fd = match std::env::var_os("BERTH_LAUNCH_MARKS") {
            Some(path) => {
                let Ok(path) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
                    path.as_os_str(),
                )) else {
                    return;
                };
                // SAFETY: a nul-terminated path; the descriptor is kept for
                // the process's life in FD.
                let opened = unsafe {
                    libc::open(
                        path.as_ptr(),
                        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                if opened < 0 {
                    -2
                } else {
                    opened
                }
            }
            None => -2,
        };
        FD.store(fd, Ordering::Relaxed);
    }
    if fd < 0 {
        return;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let micros = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    let line = format!("{} {micros} {label}\n", std::process::id());
    // SAFETY: writes the line's bytes to a descriptor this process owns;
    // O_APPEND keeps lines from several processes whole.
    unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
}

#[cfg(test)]
mod tests {
    use super::mark;

    // The only test in this crate that sets BERTH_LAUNCH_MARKS: a process
    // opens the file named at its first mark.
    #[test]
    fn marks_are_lines_with_pid_time_and_label_only_with_the_feature() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("marks");
        std::env::set_var("BERTH_LAUNCH_MARKS", &file);
        mark("agent: first");
        mark("child: second step");
        if cfg!(feature = "launch-marks") {
            let text = std::fs::read_to_string(&file).unwrap();
            let lines: Vec<(u32, u64, &str)> = text
                .lines()
                .map(|l| {
                    let mut parts = l.splitn(3, ' ');
                    let pid = parts.next().unwrap().parse().unwrap();
                    let at = parts.next().unwrap().parse().unwrap();
                    (pid, at, parts.next().unwrap())
                })
                .collect();
            assert_eq!(lines.len(), 2, "{text}");
            assert!(lines.iter().all(|l| l.0 == std::process::id()), "{text}");
            assert!(lines[0].1 <= lines[1].1, "{text}");
            assert_eq!(lines[0].2, "agent: first");
            assert_eq!(lines[1].2, "child: second step");
        } else {
            assert!(!file.exists(), "a build without launch-marks wrote marks");
        }
    }
}
