//! The agent's exclusive hold on its runtime dir: one agent per runtime dir,
//! checked before anything in it is read or changed.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file in the runtime dir; it holds the owner's pid, for people.
const LOCK_FILE: &str = "agent.lock";

/// Errors taking the runtime dir's lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another agent holds {} (pid {pid})", dir.display())]
    Held { dir: PathBuf, pid: String },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive `flock` on `<runtime_dir>/agent.lock`, released when dropped
/// (or when the agent dies: the kernel drops it with the last fd, which is
/// close-on-exec so no shim inherits it).
#[derive(Debug)]
pub struct RuntimeLock {
    _file: Flock<File>,
}

impl RuntimeLock {
    /// Takes the lock without waiting; fails with [`LockError::Held`] naming
    /// the holder's pid when another agent has it.
    pub fn acquire(runtime_dir: &Path) -> Result<RuntimeLock, LockError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { op, path, source }
        };
        super::create_runtime_dir(runtime_dir).map_err(io("create", runtime_dir))?;
        let path = runtime_dir.join(LOCK_FILE);
        // Not truncated on open: the holder's pid must stay readable.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: runtime_dir.to_path_buf(),
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                });
            }
            Err((_, errno)) => return Err(io("flock", &path)(errno.into())),
        };
        file.set_len(0).map_err(io("truncate", &path))?;
        file.rewind().map_err(io("seek", &path))?;
        writeln!(file, "{}", std::process::id()).map_err(io("write", &path))?;
        Ok(RuntimeLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = RuntimeLock::acquire(dir.path()).unwrap();
        let err = RuntimeLock::acquire(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "another agent holds {} (pid {})",
                dir.path().display(),
                std::process::id()
            )
        );
        drop(first);
        RuntimeLock::acquire(dir.path()).unwrap();
    }
}
