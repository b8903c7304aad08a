//! The `*at` system calls an extraction makes on one name of an open
//! directory: never a path, so nothing is resolved again and no symlink is
//! followed (`AT_SYMLINK_NOFOLLOW` where the call has the choice).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

/// One name of a directory, as the C string the calls take. [`super::name`]
/// made sure it is a single plain component.
fn c_name(name: &OsStr) -> io::Result<CString> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes == b"." || bytes == b".." {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mkdirat(dir, name, mode)` (the umask applies; callers chmod after).
pub(crate) fn mkdir(dir: &impl AsFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe { libc::mkdirat(dir.as_fd().as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })
}

/// `mknodat(dir, name, kind | mode, dev)`; `kind` is `S_IFCHR`, `S_IFBLK`
/// or `S_IFIFO`.
pub(crate) fn mknod(
    dir: &impl AsFd,
    name: &OsStr,
    kind: libc::mode_t,
    mode: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let c = c_name(name)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe {
        libc::mknodat(
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            kind | (mode as libc::mode_t & 0o7777),
            dev,
        )
    })
}

/// `linkat(from_dir, from, dir, name, 0)`: a hard link to the entry `from`
/// itself (a symlink is linked, not followed).
pub(crate) fn link(
    from_dir: &impl AsFd,
    from: &OsStr,
    dir: &impl AsFd,
    name: &OsStr,
) -> io::Result<()> {
    let c_from = c_name(from)?;
    let c = c_name(name)?;
    // SAFETY: valid descriptors and NUL-terminated names.
    check(unsafe {
        libc::linkat(
            from_dir.as_fd().as_raw_fd(),
            c_from.as_ptr(),
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            0,
        )
    })
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn lchown(dir: &impl AsFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe {
        libc::fchownat(
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `fchmodat(dir, name, mode)` of an entry the caller just made as a
/// device node or FIFO (never a symlink, whose mode Linux ignores).
pub(crate) fn chmod_node(dir: &impl AsFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe {
        libc::fchmodat(
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            mode as libc::mode_t & 0o7777,
            0,
        )
    })
}

fn times(mtime: i64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: mtime as _,
        tv_nsec: 0,
    };
    [t, t]
}

/// `utimensat(dir, name, mtime, AT_SYMLINK_NOFOLLOW)` (access time = mtime).
pub(crate) fn set_times_at(dir: &impl AsFd, name: &OsStr, mtime: i64) -> io::Result<()> {
    let c = c_name(name)?;
    let ts = times(mtime);
    // SAFETY: valid descriptor, NUL-terminated name, two timespecs.
    check(unsafe {
        libc::utimensat(
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `futimens(fd, mtime)` (access time = mtime).
pub(crate) fn set_times(fd: &impl AsFd, mtime: i64) -> io::Result<()> {
    let ts = times(mtime);
    // SAFETY: valid descriptor and two timespecs.
    check(unsafe { libc::futimens(fd.as_fd().as_raw_fd(), ts.as_ptr()) })
}

/// `fchown(fd, uid, gid)`.
pub(crate) fn fchown(fd: &impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid descriptor.
    check(unsafe { libc::fchown(fd.as_fd().as_raw_fd(), uid, gid) })
}

/// `fchmod(fd, mode)`, setuid/setgid/sticky bits included.
pub(crate) fn fchmod(fd: &impl AsFd, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor.
    check(unsafe { libc::fchmod(fd.as_fd().as_raw_fd(), mode as libc::mode_t & 0o7777) })
}

/// `fsetxattr(fd, name, value)`.
pub(crate) fn set_xattr(fd: &impl AsFd, name: &str, value: &[u8]) -> io::Result<()> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid descriptor, NUL-terminated name, value pointer and
    // length from one slice.
    check(unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            c.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}
