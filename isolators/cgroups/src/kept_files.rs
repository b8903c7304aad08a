//! Statistics files kept open between reads. A metrics scrape reads the
//! same few files of every running container each time; opening one costs
//! more than reading it (a path walk down the whole hierarchy, then the
//! kernfs open and, at close, its release). kernfs serves control files
//! through seq_file, which regenerates a file's text whenever it is read
//! from offset 0 again, so a kept file read with `pread(fd, buf, 0)` is as
//! fresh as a newly opened one.
//!
//! What it costs: an open file per kept statistic (about 5 kB of kernel
//! memory each, the seq_file buffer included) for as long as the
//! [`crate::ContainerCgroup`] that read it lives (an isolator's state: until
//! the container's cleanup). The agent keeps at most half of its open-file
//! limit this way (the rest is ample for its other files: about two per
//! container); past that, files are opened per read as before.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::cgroupfs::{self, read_from_start};
use crate::CgroupError;

/// The files kept open: the statistics the isolators' scrape figures read
/// (v1 and v2 names). Limits and other control files are opened per read.
pub(crate) const KEPT: &[&str] = &[
    "cpu.stat",
    "cpuacct.stat",
    "cpuacct.usage",
    "memory.stat",
    "memory.usage_in_bytes",
    "memory.max_usage_in_bytes",
    "memory.oom_control",
    "memory.current",
    "memory.peak",
    "memory.events",
    "pids.current",
    "blkio.throttle.io_service_bytes",
    "blkio.throttle.io_service_bytes_recursive",
    "io.stat",
];

/// Files kept open by every [`KeptFiles`] of the process.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The most files kept open at once: half the open-file limit.
fn budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given, which lives
        // across the call.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            limit.rlim_cur
        } else {
            1024
        };
        usize::try_from(soft / 2).unwrap_or(usize::MAX).min(1 << 20)
    })
}

/// One container cgroup's kept files (its [`crate::ContainerCgroup`]'s
/// clones share one); closed when dropped.
#[derive(Default)]
pub(crate) struct KeptFiles(Mutex<Vec<(PathBuf, File)>>);

impl KeptFiles {
    /// Reads `path` through its kept file, opening and keeping it first
    /// when the budget allows; a kept file that fails is forgotten and
    /// `path` opened again (the error of that open, or of its read, is the
    /// one reported, as [`cgroupfs::read`] reports it).
    pub(crate) fn read(&self, path: &Path) -> Result<String, CgroupError> {
        let mut files = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = files
            .iter()
            .position(|(p, _)| p.as_os_str() == path.as_os_str())
        {
            match read_from_start(&files[at].1) {
                Ok(text) => return Ok(text),
                Err(_) => {
                    // The cgroup went (ENODEV) or was made again: reopen.
                    files.swap_remove(at);
                    OPEN.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        if OPEN.fetch_add(1, Ordering::Relaxed) >= budget() {
            OPEN.fetch_sub(1, Ordering::Relaxed);
            return cgroupfs::read(path);
        }
        let opened = File::open(path).and_then(|file| Ok((read_from_start(&file)?, file)));
        match opened {
            Ok((text, file)) => {
                files.push((path.to_path_buf(), file));
                Ok(text)
            }
            Err(source) => {
                OPEN.fetch_sub(1, Ordering::Relaxed);
                Err(CgroupError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

impl Drop for KeptFiles {
    fn drop(&mut self) {
        let files = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        OPEN.fetch_sub(files.len(), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for KeptFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        write!(f, "KeptFiles({})", files.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept file is read again from its start: a rewrite in place is
    /// seen, and a file replaced by another (a cgroup made again) is read
    /// through a new open.
    #[test]
    fn a_kept_file_reads_the_current_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pids.current");
        std::fs::write(&path, "1\n").unwrap();
        let kept = KeptFiles::default();
        assert_eq!(kept.read(&path).unwrap(), "1\n");
        assert_eq!(format!("{kept:?}"), "KeptFiles(1)");
        std::fs::write(&path, "22\n").unwrap();
        assert_eq!(kept.read(&path).unwrap(), "22\n");
        std::fs::remove_file(&path).unwrap();
        // The kept file still reads the removed inode; a regular file does
        // not fail there, so this checks only that a missing path whose
        // kept file fails reports the path's own error.
        let gone = dir.path().join("memory.stat");
        assert!(matches!(kept.read(&gone), Err(CgroupError::Read { .. })));
        assert_eq!(format!("{kept:?}"), "KeptFiles(1)");
    }
}
