//! openat2(2): opening a path with resolution limits (no symlinks, beneath a
//! directory, ...). berth-confined builds its confined-open API on the same
//! call; this is the plain syscall for the agent's other users.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How often a lookup that the kernel could not keep in bounds (`EAGAIN`)
/// is tried again before its `EAGAIN` is returned.
const TRIES_ON_EAGAIN: u32 = 64;

/// Opens `path` relative to `dir` (`None`: the working directory, for an
/// absolute path) with `flags` (`O_*`), `mode` (used with `O_CREAT`) and
/// `resolve` (`RESOLVE_*`). A path with a nul byte is `EINVAL`.
///
/// With `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH`, a `..` on the way fails the
/// lookup with `EAGAIN` when a rename or a mount anywhere on the host
/// raced with it (the kernel cannot tell that the `..` stayed in bounds);
/// the lookup is made again then, up to [`TRIES_ON_EAGAIN`] times.
pub fn openat2(
    dir: Option<BorrowedFd<'_>>,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let mut tries = 1;
    loop {
        match openat2_once(dir, path, flags, mode, resolve) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < TRIES_ON_EAGAIN => {
                tries += 1;
            }
            other => return other,
        }
    }
}

/// One `openat2(2)` call.
fn openat2_once(
    dir: Option<BorrowedFd<'_>>,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = if flags & libc::O_CREAT != 0 {
        u64::from(mode)
    } else {
        0
    };
    how.resolve = resolve;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a valid dir fd (or AT_FDCWD), a nul-terminated path and a
    // correctly sized open_how, all outliving the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Opens `path` (absolute) as an `O_PATH` handle, refusing to follow any
/// symlink on the way (`RESOLVE_NO_SYMLINKS`: `ELOOP`): the agent checks a
/// bind source with it, the shim holds the source it mounts with it.
pub fn open_no_follow(path: &Path) -> io::Result<OwnedFd> {
    openat2(
        None,
        path,
        libc::O_PATH | libc::O_CLOEXEC,
        0,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn no_follow_refuses_a_symlink_anywhere_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let real = std::fs::canonicalize(dir.path().join("real")).unwrap();
        assert!(open_no_follow(&real).is_ok());
        let through = real.parent().unwrap().join("link");
        let err = open_no_follow(&through).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
    }

    #[test]
    fn a_dotdot_lookup_racing_with_renames_is_made_again() {
        // Renames anywhere on the host make the kernel refuse a `..` in a
        // RESOLVE_IN_ROOT lookup (EAGAIN) now and then.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("b"), b"x").unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renamer = {
            let (stop, dir) = (stop.clone(), dir.path().to_path_buf());
            std::fs::write(dir.join("r1"), b"").unwrap();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::rename(dir.join("r1"), dir.join("r2")).unwrap();
                    std::fs::rename(dir.join("r2"), dir.join("r1")).unwrap();
                }
            })
        };
        let resolve = libc::RESOLVE_IN_ROOT;
        let flags = libc::O_PATH | libc::O_CLOEXEC;
        let (mut refused_once, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let path = Path::new("a/../a/../b");
            if openat2_once(Some(root.as_fd()), path, flags, 0, resolve).is_err() {
                refused_once += 1;
            }
            if openat2(Some(root.as_fd()), path, flags, 0, resolve).is_err() {
                refused += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renamer.join().unwrap();
        assert_eq!(
            refused, 0,
            "refused {refused} times ({refused_once} single tries)"
        );
        eprintln!("single tries refused: {refused_once} of 20000");
    }

    #[test]
    fn beneath_refuses_a_symlink_out_and_opens_a_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
        let flags = libc::O_RDONLY | libc::O_CLOEXEC;
        openat2(Some(root.as_fd()), Path::new("f"), flags, 0, resolve).unwrap();
        let err = openat2(
            Some(root.as_fd()),
            Path::new("out/passwd"),
            flags,
            0,
            resolve,
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        let err = openat2(Some(root.as_fd()), Path::new("../x"), flags, 0, resolve).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
        let err = openat2(None, Path::new("a\0b"), flags, 0, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }
}
