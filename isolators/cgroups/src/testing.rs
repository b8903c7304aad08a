//! Helpers for tests of cgroup-based isolators against the real kernel
//! (feature `fake`, with [`crate::fake`]): they run as root and leave
//! nothing outside the cgroup the machine put the test in.
//!
//! ```no_run
//! use berth_cgroups::testing::{skip_unless_root, TestRoot};
//! use berth_cgroups::Controller;
//!
//! if skip_unless_root() {
//!     return Ok(());
//! }
//! let root = TestRoot::detect(); // removed when dropped
//! root.ensure(&[Controller::Memory])?;
//! let isolator_root = root.shared(); // what an isolator takes
//! # drop(isolator_root);
//! # Ok::<(), berth_cgroups::CgroupError>(())
//! ```

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::CgroupRoot;

/// How many threads of process `pid` (this process for `None`) are named
/// `name`: an isolator's watcher threads, say. Linux cuts thread names at
/// 15 bytes: pass the cut name.
pub fn threads_named(pid: Option<u32>, name: &str) -> usize {
    let tasks = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_string(),
    };
    std::fs::read_dir(tasks)
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|task| {
                    std::fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|comm| comm.trim_end() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

/// The environment variable naming a file where skipped tests are listed.
///
/// `cargo test` hides the output of tests that pass, and a test that returns
/// early passes: so a skip is also appended, one line a skip, to this file,
/// which `.ci/run` counts and prints.
pub const SKIP_LOG_ENV: &str = "BERTH_SKIP_LOG";

/// Reports a skipped test loudly: on stderr, and in the file named by
/// [`SKIP_LOG_ENV`] when it is set.
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("\n*** {line} ***\n");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write of the whole line: tests skip concurrently, and
            // O_APPEND keeps a single small write whole.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Whether a test that needs root must be skipped; says so (see [`skip`]).
/// Under CI (`CI=true`), which runs as root, a missing root is a failure.
///
/// # Panics
///
/// Under `CI=true` when not root.
#[track_caller]
pub fn skip_unless_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let at = std::panic::Location::caller();
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{at}: needs root, and CI must run it"
        );
        skip(&at.to_string(), "needs root");
        return true;
    }
    false
}

/// A relative `--cgroup-root` value unique to this process and call:
/// `<prefix>-<pid>-<n>`.
pub fn unique_root_value(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A relative cgroup root unique to one test, below the test process' own
/// cgroup in each hierarchy of this host. Dropping it removes it with every
/// cgroup below it (errors ignored), so a failed test leaves nothing behind.
#[derive(Debug)]
pub struct TestRoot {
    root: Arc<CgroupRoot>,
}

impl TestRoot {
    /// Detects this host's layout for a new unique root (not created yet).
    ///
    /// # Panics
    ///
    /// If the layout cannot be detected.
    pub fn detect() -> Self {
        let value = unique_root_value("berth-test");
        let root = CgroupRoot::detect(&value)
            .unwrap_or_else(|e| panic!("detect cgroup root {value:?}: {e}"));
        TestRoot {
            root: Arc::new(root),
        }
    }

    /// The root, shared the way isolators take it.
    pub fn shared(&self) -> Arc<CgroupRoot> {
        self.root.clone()
    }
}

impl Deref for TestRoot {
    type Target = CgroupRoot;

    fn deref(&self) -> &CgroupRoot {
        &self.root
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        let _ = self.root.remove();
    }
}
