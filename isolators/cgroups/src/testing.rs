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

/// Whether a test that needs root must be skipped; says so on stderr.
pub fn skip_unless_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("\n*** SKIPPED: needs root ***\n");
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
