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
//! berth_sys::launch_marks::mark("agent: launch begins");
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
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Opened once per process (std opens close-on-exec); `None`: no file
    // named, or it could not be opened.
    static FILE: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    let file = FILE.get_or_init(|| {
        let path = std::env::var_os("BERTH_LAUNCH_MARKS")?;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .ok()
    });
    let Some(mut file) = file.as_ref() else {
        return;
    };
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let micros = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    // One write of the whole line: O_APPEND keeps lines from several
    // processes whole.
    let _ = file.write_all(format!("{} {micros} {label}\n", std::process::id()).as_bytes());
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
