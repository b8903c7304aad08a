//! Detaching the monitor from the agent: its own session, `/` as cwd, and its
//! stdio away from the agent's.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, setsid};
use thiserror::Error;

use berth_protocol::messages::SHIM_LOG_FILE;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("setsid: {0}")]
    Setsid(Errno),
    #[error("chdir /: {0}")]
    Chdir(Errno),
    #[error("open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("redirect stdio: {0}")]
    Stdio(Errno),
}

/// Called in the forked monitor. Afterwards stderr is `<state-dir>/shim.log`.
pub fn detach(state_dir: &Path) -> Result<(), DaemonError> {
    leave_session()?;
    log_to(state_dir)
}

/// The first half of [`detach`], for an idle shim that does not know its
/// container yet: its own session, `/` as cwd, all of stdio `/dev/null`.
pub fn leave_session() -> Result<(), DaemonError> {
    setsid().map_err(DaemonError::Setsid)?;
    chdir("/").map_err(DaemonError::Chdir)?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| DaemonError::Open {
            path: "/dev/null".into(),
            source,
        })?;
    dup2_stdin(&null).map_err(DaemonError::Stdio)?;
    dup2_stdout(&null).map_err(DaemonError::Stdio)?;
    dup2_stderr(&null).map_err(DaemonError::Stdio)?;
    Ok(())
}

/// The second half of [`detach`]: stderr becomes `<state-dir>/shim.log`.
pub fn log_to(state_dir: &Path) -> Result<(), DaemonError> {
    let log_path = state_dir.join(SHIM_LOG_FILE);
    let log = fs::create_dir_all(state_dir)
        .and_then(|()| OpenOptions::new().append(true).create(true).open(&log_path))
        .map_err(|source| DaemonError::Open {
            path: log_path,
            source,
        })?;
    dup2_stderr(&log).map_err(DaemonError::Stdio)?;
    Ok(())
}
