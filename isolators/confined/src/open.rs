//! Resolving a relative path beneath a directory descriptor without
//! following any symlink: `openat2`, or per-component `O_NOFOLLOW` walking
//! on kernels without it (before 5.6).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once openat2 answered ENOSYS: the walk is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// How a failed resolution failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Absolute, `..` above the start, a symlink or magic link on the way.
    Escapes,
    Io(io::Error),
}

/// Opens `path` beneath `dir` with `flags` (`O_CLOEXEC | O_NOFOLLOW |
/// O_NONBLOCK` are always added) and `mode` for creation. An empty path or
/// `.` is the directory itself. `no_xdev` also refuses crossing a mount.
pub(crate) fn open_beneath(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: libc::mode_t,
    no_xdev: bool,
) -> Result<OwnedFd, OpenError> {
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    let relative: &Path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match openat2(dir, relative, flags, mode, no_xdev) {
            Err(OpenError::Io(e)) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    walk(dir, relative, flags, mode, no_xdev)
}

fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: libc::mode_t,
    no_xdev: bool,
) -> Result<OwnedFd, OpenError> {
    // A NUL in the path is refused as before, with this crate's error.
    c_string(path)?;
    let mut resolve =
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    if no_xdev {
        resolve |= libc::RESOLVE_NO_XDEV;
    }
    berth_sys::openat2::openat2(Some(dir), path, flags, mode, resolve).map_err(|e| {
        match e.raw_os_error() {
            // EXDEV: the walk would leave the directory (absolute, `..`
            // above it, a mount with no_xdev). ELOOP: a symlink or a magic
            // link on the way.
            Some(libc::EXDEV) | Some(libc::ELOOP) => OpenError::Escapes,
            _ => OpenError::Io(e),
        }
    })
}

/// The fallback: one `openat(O_NOFOLLOW)` per component, refusing absolute
/// paths and `..`, and (with `no_xdev`) a directory on another device.
pub(crate) fn walk(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: libc::mode_t,
    no_xdev: bool,
) -> Result<OwnedFd, OpenError> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(OpenError::Escapes)
            }
        }
    }
    let start_dev = if no_xdev { Some(dev_of(dir)?) } else { None };
    let Some(last) = names.pop() else {
        return openat(dir, Path::new("."), flags, mode);
    };
    let mut current: Option<OwnedFd> = None;
    for name in names {
        let at = current.as_ref().map_or(dir, |fd| fd_borrow(fd));
        let next = openat(
            at,
            Path::new(name),
            libc::O_RDONLY
                | libc::O_DIRECTORY
                | libc::O_CLOEXEC
                | libc::O_NOFOLLOW
                | libc::O_NONBLOCK,
            0,
        )
        .map_err(|e| match e {
            // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR.
            OpenError::Io(e) if is_symlink(at, Path::new(name)) => {
                drop(e);
                OpenError::Escapes
            }
            e => e,
        })?;
        if start_dev.is_some_and(|dev| dev_of(fd_borrow(&next)).ok() != Some(dev)) {
            return Err(OpenError::Escapes);
        }
        current = Some(next);
    }
    let at = current.as_ref().map_or(dir, |fd| fd_borrow(fd));
    let fd = openat(at, Path::new(last), flags, mode)?;
    if start_dev.is_some_and(|dev| dev_of(fd_borrow(&fd)).ok() != Some(dev)) {
        return Err(OpenError::Escapes);
    }
    Ok(fd)
}

fn fd_borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}

fn openat(
    dir: BorrowedFd<'_>,
    name: &Path,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> Result<OwnedFd, OpenError> {
    let c_name = c_string(name)?;
    // SAFETY: the name is NUL-terminated; the descriptor is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c_name.as_ptr(),
            flags,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            // O_NOFOLLOW on a symlink.
            Some(libc::ELOOP) => OpenError::Escapes,
            _ => OpenError::Io(e),
        });
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_symlink(dir: BorrowedFd<'_>, name: &Path) -> bool {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

fn dev_of(fd: BorrowedFd<'_>) -> Result<u64, OpenError> {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_dev)
        .map_err(|e| OpenError::Io(e.into()))
}

pub(crate) fn c_string(path: &Path) -> Result<CString, OpenError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| OpenError::Io(io::Error::from(io::ErrorKind::InvalidInput)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_fallback_walk_refuses_what_openat2_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        std::os::unix::fs::symlink("file", root.join("sub/link")).unwrap();
        let fd = std::fs::File::open(root).unwrap();
        let open = |path: &str| {
            walk(
                fd.as_fd(),
                Path::new(path),
                libc::O_RDONLY | libc::O_NOFOLLOW,
                0,
                false,
            )
        };
        assert!(open("sub/file").is_ok());
        assert!(open("./sub/file").is_ok());
        for path in [
            "/etc/passwd",
            "..",
            "sub/../../x",
            "etc/passwd",
            "etc",
            "sub/link",
        ] {
            assert!(matches!(open(path), Err(OpenError::Escapes)), "{path}");
        }
        assert!(
            matches!(open("nope"), Err(OpenError::Io(e)) if e.kind() == io::ErrorKind::NotFound)
        );
    }
}
