//! The agent's prepared mounts (secrets and config files, decision 0034):
//! detached read-only tmpfs mounts inherited as descriptors (`--files-fd
//! DEST=FD`). The bundle names an empty tmpfs at each DEST with source
//! [`TMPFS_SOURCE`] (what `runc` would mount); the shim turns that entry
//! into an attach of the inherited mount, done by the container child in
//! its own mount namespace like any bind of a detached tree.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use thiserror::Error;

use super::mounts::MountSpec;
use berth_protocol::bundle::FILES_TMPFS_SOURCE as TMPFS_SOURCE;

#[derive(Debug, Error)]
pub enum FilesError {
    #[error("prepared mount for {dest}: descriptor {fd} is not open")]
    NotOpen { dest: PathBuf, fd: i32 },
    #[error("prepared mount for {dest}: the bundle has no {TMPFS_SOURCE} tmpfs there")]
    NoMount { dest: PathBuf },
    #[error("the bundle's {TMPFS_SOURCE} tmpfs at {dest} has no prepared mount")]
    NotPrepared { dest: PathBuf },
}

/// Points each prepared destination's mount at its inherited descriptor
/// (made close-on-exec); returns the descriptors, which the monitor keeps
/// until the child is cloned.
pub fn attach_prepared(
    mounts: &mut [MountSpec],
    files: &[(PathBuf, i32)],
) -> Result<Vec<OwnedFd>, FilesError> {
    let mut owned = Vec::with_capacity(files.len());
    for (dest, fd) in files {
        owned.push(adopt_inherited(*fd).map_err(|_| FilesError::NotOpen {
            dest: dest.clone(),
            fd: *fd,
        })?);
    }
    for (fd, (dest, _)) in owned.iter().zip(files) {
        let m = mounts
            .iter_mut()
            .find(|m| &m.destination == dest && is_prepared_tmpfs(m))
            .ok_or_else(|| FilesError::NoMount { dest: dest.clone() })?;
        m.fstype = "bind".into();
        m.options.flags |= libc::MS_BIND;
        m.options.data.clear();
        m.source_tree = Some(fd.as_raw_fd());
    }
    if let Some(m) = mounts.iter().find(|m| is_prepared_tmpfs(m)) {
        return Err(FilesError::NotPrepared {
            dest: m.destination.clone(),
        });
    }
    Ok(owned)
}

/// Takes a descriptor the agent passed at number `fd` (the prepared
/// mounts, the root mount), made close-on-exec. `EBADF` if it is not open.
pub fn adopt_inherited(fd: i32) -> Result<OwnedFd, nix::errno::Errno> {
    // SAFETY: F_SETFD on a number; fails with EBADF if it is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: inherited from the agent for this purpose alone; nothing else
    // in the shim owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_prepared_tmpfs(m: &MountSpec) -> bool {
    m.fstype == "tmpfs" && m.source.as_deref() == Some(std::path::Path::new(TMPFS_SOURCE))
}
