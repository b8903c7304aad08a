//! Looking up paths inside the container's root before `pivot_root`.
//!
//! Every lookup goes through `openat2(RESOLVE_IN_ROOT)` relative to a dirfd of
//! the new root, so a symlink in the rootfs (absolute or with `..`) cannot
//! make a mount land on the host's tree. This also matters when the rootfs is
//! the host's `/`: the new root is then a bind mount stacked on top of `/`,
//! and an absolute path would resolve through the old, unstacked root.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("open {path} in the container root: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("create directory {path} in the container root: {source}")]
    Mkdir { path: PathBuf, source: io::Error },
    #[error("path {0} contains a nul byte")]
    Nul(PathBuf),
    #[error("mount target {} {}", .0.display(), ESCAPES)]
    Escapes(PathBuf),
}

/// What the shim says of a mount target that an image's symlink leads out
/// of the container's root (the agent answers it with a 400 on `mounts`,
/// by its [`berth_protocol::FailureKind::MountEscape`]).
const ESCAPES: &str =
    "leads out of the container root through a symlink (absolute, or with `..`): refused";

impl ResolveError {
    /// A target that leads out of the container root: the caller's mount
    /// (or the image's symlink), not berth's trouble.
    pub fn is_escape(&self) -> bool {
        matches!(self, ResolveError::Escapes(_))
    }
}

/// `path` made relative (leading `/` stripped, `.` dropped), for use with a
/// dirfd of the root; `..` is kept, `RESOLVE_IN_ROOT` clamps it at the root.
pub fn relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => out.push(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Opens `path` (container-absolute) under `root` with `flags`.
pub fn open(root: &OwnedFd, path: &Path, flags: i32, mode: u32) -> Result<OwnedFd, ResolveError> {
    open_resolving(
        root,
        path,
        flags,
        mode,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Refuses a `path` whose existing part leads out of `root` through a
/// symlink, which `RESOLVE_IN_ROOT` would clamp into the root instead
/// (`RESOLVE_BENEATH`: an absolute symlink or a `..` above the root fails
/// with `EXDEV`). For a container's own bind mounts (decision 0033): a
/// symlink an image puts at their target is refused, not followed.
pub fn refuse_escape(root: &OwnedFd, path: &Path) -> Result<(), ResolveError> {
    let mut done = PathBuf::from("/");
    for comp in relative(path).components() {
        done.push(comp);
        let beneath = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        match open_resolving(root, &done, libc::O_PATH, 0, beneath) {
            Ok(_) => {}
            Err(ResolveError::Open { source, .. }) => {
                return match source.raw_os_error() {
                    // The rest is made by `dir`, in the root.
                    Some(libc::ENOENT) => Ok(()),
                    Some(libc::EXDEV) => Err(ResolveError::Escapes(path.into())),
                    _ => Err(ResolveError::Open { path: done, source }),
                };
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn open_resolving(
    root: &OwnedFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd, ResolveError> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    if rel.as_os_str().as_bytes().contains(&0) {
        return Err(ResolveError::Nul(path.into()));
    }
    berth_sys::openat2::openat2(
        Some(root.as_fd()),
        &rel,
        flags | libc::O_CLOEXEC,
        mode,
        resolve,
    )
    .map_err(|source| ResolveError::Open {
        path: path.into(),
        source,
    })
}

/// Opens `path` as an `O_PATH` handle; `None` when it does not exist.
pub fn open_path(root: &OwnedFd, path: &Path) -> Result<Option<OwnedFd>, ResolveError> {
    match open(root, path, libc::O_PATH, 0) {
        Ok(fd) => Ok(Some(fd)),
        Err(ResolveError::Open { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// An `O_PATH` handle of the directory `path` under `root`, which is made
/// first, with its missing parents, if it does not exist: one lookup for a
/// directory that is there (a mount point the image has).
pub fn dir(root: &OwnedFd, path: &Path) -> Result<OwnedFd, ResolveError> {
    match open(root, path, libc::O_PATH | libc::O_DIRECTORY, 0) {
        Err(ResolveError::Open { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            mkdir_all(root, path)
        }
        other => other,
    }
}

/// Creates the directory `path` and its missing parents under `root`;
/// returns an `O_PATH` handle of it.
fn mkdir_all(root: &OwnedFd, path: &Path) -> Result<OwnedFd, ResolveError> {
    let mut done = PathBuf::from("/");
    for comp in relative(path).components() {
        let parent = open(root, &done, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        done.push(comp);
        let name = CString::new(comp.as_os_str().as_bytes())
            .map_err(|_| ResolveError::Nul(path.into()))?;
        // SAFETY: valid dirfd and nul-terminated single component.
        let rc = unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            // EEXIST also covers a symlink to a directory; the final open
            // below tells whether it really resolves to one.
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(ResolveError::Mkdir {
                    path: done,
                    source: err,
                });
            }
        }
    }
    open(root, path, libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// Creates `path` as an empty file (and its parent directories) unless it
/// exists already.
pub fn create_file(root: &OwnedFd, path: &Path) -> Result<(), ResolveError> {
    if let Some(parent) = path.parent() {
        dir(root, parent)?;
    }
    if open_path(root, path)?.is_some() {
        return Ok(());
    }
    open(root, path, libc::O_CREAT | libc::O_WRONLY, 0o644).map(drop)
}

/// The `/proc/self/fd/N` name of `fd`, which `mount(2)` accepts as source or
/// target and which refers to exactly the object we resolved.
pub fn proc_fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_strips_root_and_dots() {
        assert_eq!(relative(Path::new("/dev/pts")), PathBuf::from("dev/pts"));
        assert_eq!(relative(Path::new("/./a//b/")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
        assert_eq!(relative(Path::new("/a/../b")), PathBuf::from("a/../b"));
    }
}
