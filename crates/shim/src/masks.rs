//! `linux.maskedPaths` and `linux.readonlyPaths`.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, SFlag};
use thiserror::Error;

use super::mounts::{self, MountError, MOUNT_ATTR_RDONLY};
use super::resolve::{self, ResolveError};

#[derive(Debug, Error)]
pub enum MaskError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("stat {path}: {errno}")]
    Stat { path: PathBuf, errno: Errno },
    #[error("mask {path}: {errno}")]
    Mask { path: PathBuf, errno: Errno },
    #[error("bind {path} onto itself: {errno}")]
    Bind { path: PathBuf, errno: Errno },
}

/// Hides each existing path: `/dev/null` over files, an empty read-only tmpfs
/// over directories. Missing paths are skipped (they differ per kernel).
pub fn mask_paths(root: &OwnedFd, paths: &[PathBuf]) -> Result<(), MaskError> {
    for path in paths {
        let Some(fd) = resolve::open_path(root, path)? else {
            continue;
        };
        let st = fstat(&fd).map_err(|errno| MaskError::Stat {
            path: path.clone(),
            errno,
        })?;
        let target = resolve::proc_fd_path(&fd);
        let is_dir = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR;
        let res = if is_dir {
            mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
        } else {
            // Resolved through the old root, i.e. the host's /dev/null, which
            // is the same device the container's /dev/null is bound from.
            mount(
                Some("/dev/null"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        res.map_err(|errno| MaskError::Mask {
            path: path.clone(),
            errno,
        })?;
    }
    Ok(())
}

/// Makes each existing path (and everything mounted below it) read-only.
pub fn readonly_paths(root: &OwnedFd, paths: &[PathBuf]) -> Result<(), MaskError> {
    for path in paths {
        let Some(fd) = resolve::open_path(root, path)? else {
            continue;
        };
        let target = resolve::proc_fd_path(&fd);
        // A bind onto itself makes the path a mount of its own, so that the
        // read-only flag applies to it and not to its parent mount.
        mount(
            Some(&target),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|errno| MaskError::Bind {
            path: path.clone(),
            errno,
        })?;
        let mounted = resolve::open(root, path, libc::O_PATH, 0)?;
        mounts::set_attr_recursive(&mounted, MOUNT_ATTR_RDONLY, 0, path)?;
    }
    Ok(())
}
