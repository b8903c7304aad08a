//! The container child's move into its own cgroups (decision 0047).
//!
//! The agent names the cgroup directories (`--cgroup`) before it has made
//! them: the isolators prepare on a helper thread while the child sets
//! itself up. The child opens each one's parent first, before any mount of
//! its setup can cover the host's cgroup tree, then waits for the agent's
//! byte on the cgroups-ready pipe (every `prepare` has ended) and writes
//! `0` to each directory's `tasks`: a thread that moves itself skips the
//! kernel's global migration lock. That is cgroup v1's file; the agent
//! names none on v2 or with a user namespace.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupMoveError {
    #[error("cgroup {dir}: not a directory below another")]
    NoParent { dir: PathBuf },
    #[error("open the parent of cgroup {dir}: {errno}")]
    OpenParent { dir: PathBuf, errno: Errno },
    #[error("the agent went away before the cgroups were made")]
    AgentGone,
    #[error("read the cgroups-ready pipe: {0}")]
    Ready(std::io::Error),
    #[error("move into cgroup {dir}: {errno}")]
    Move { dir: PathBuf, errno: Errno },
}

/// The child's cgroups, their parents open, and the pipe it waits on.
pub struct CgroupMove<'a> {
    /// Each cgroup with its parent directory (`O_PATH`).
    cgroups: Vec<(&'a Path, OwnedFd)>,
    ready: BorrowedFd<'a>,
}

impl<'a> CgroupMove<'a> {
    /// Opens the parents of `dirs` (none to move: `None`). `ready` is the
    /// pipe's read end, which the monitor keeps open for the child.
    pub fn open(
        dirs: &'a [PathBuf],
        ready: Option<RawFd>,
    ) -> Result<Option<Self>, CgroupMoveError> {
        let Some(ready) = ready.filter(|_| !dirs.is_empty()) else {
            return Ok(None);
        };
        let mut cgroups = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let parent = dir
                .parent()
                .filter(|_| dir.file_name().is_some())
                .ok_or_else(|| CgroupMoveError::NoParent { dir: dir.clone() })?;
            // Opened before the setup's mounts: a bind over the host's
            // cgroup tree (host-root containers) cannot cover it.
            let fd = nix::fcntl::open(
                parent,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| CgroupMoveError::OpenParent {
                dir: dir.clone(),
                errno,
            })?;
            cgroups.push((dir.as_path(), fd));
        }
        // SAFETY: the monitor keeps the descriptor open for the child's
        // life (its raw number is in the config), and the child never
        // closes it before exec.
        let ready = unsafe { BorrowedFd::borrow_raw(ready) };
        Ok(Some(CgroupMove { cgroups, ready }))
    }

    /// Waits until the agent says the cgroups exist, then moves this
    /// thread (the process: the child has one) into each.
    pub fn join(self) -> Result<(), CgroupMoveError> {
        let mut byte = [0u8; 1];
        match super::sync::read_retry(self.ready, &mut byte) {
            Ok(1) => {}
            Ok(_) => return Err(CgroupMoveError::AgentGone),
            Err(e) => return Err(CgroupMoveError::Ready(e)),
        }
        for (dir, parent) in &self.cgroups {
            let moved = move_self(parent.as_fd(), dir);
            moved.map_err(|errno| CgroupMoveError::Move {
                dir: dir.to_path_buf(),
                errno,
            })?;
        }
        Ok(())
    }
}

/// Writes `0` (the calling thread) to `<dir>/tasks`, `dir` opened through
/// its parent.
fn move_self(parent: BorrowedFd<'_>, dir: &Path) -> Result<(), Errno> {
    let leaf = dir.file_name().ok_or(Errno::EINVAL)?;
    let tasks = Path::new(leaf).join("tasks");
    let file = nix::fcntl::openat(
        parent,
        &tasks,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )?;
    match nix::unistd::write(&file, b"0")? {
        1 => Ok(()),
        _ => Err(Errno::EIO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn waits_for_the_byte_then_writes_0_to_each_tasks_file() {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = ["a", "b"].iter().map(|n| root.path().join(n)).collect();
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let prepared = CgroupMove::open(&dirs, Some(std::os::fd::AsRawFd::as_raw_fd(&read)))
            .unwrap()
            .unwrap();
        // Made after the open, as the agent's prepares do.
        for dir in &dirs {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("tasks"), "").unwrap();
        }
        std::fs::File::from(write).write_all(&[1]).unwrap();
        prepared.join().unwrap();
        for dir in &dirs {
            assert_eq!(std::fs::read_to_string(dir.join("tasks")).unwrap(), "0");
        }
    }

    #[test]
    fn the_agent_gone_a_missing_cgroup_or_parent_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let dirs = vec![root.path().join("c1")];
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let raw = Some(std::os::fd::AsRawFd::as_raw_fd(&read));
        drop(write);
        let gone = CgroupMove::open(&dirs, raw).unwrap().unwrap().join();
        assert!(matches!(gone, Err(CgroupMoveError::AgentGone)), "{gone:?}");

        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let raw = Some(std::os::fd::AsRawFd::as_raw_fd(&read));
        std::fs::File::from(write).write_all(&[1]).unwrap();
        let missing = CgroupMove::open(&dirs, raw)
            .unwrap()
            .unwrap()
            .join()
            .unwrap_err();
        assert!(missing.to_string().contains("c1"), "{missing}");
        assert!(matches!(
            missing,
            CgroupMoveError::Move {
                errno: Errno::ENOENT,
                ..
            }
        ));

        let nowhere = vec![root.path().join("none/c1")];
        let err = CgroupMove::open(&nowhere, raw).err().unwrap();
        assert!(matches!(
            err,
            CgroupMoveError::OpenParent {
                errno: Errno::ENOENT,
                ..
            }
        ));
        // Nothing named: nothing to wait for.
        assert!(CgroupMove::open(&[], raw).unwrap().is_none());
        assert!(CgroupMove::open(&dirs, None).unwrap().is_none());
    }
}
