//! A rename that never replaces what is at the target
//! (`renameat2(RENAME_NOREPLACE)`, by syscall number: musl has no wrapper).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Renames `from` to `to`, failing with `AlreadyExists` (`EEXIST`) if `to`
/// exists, atomically: nothing at `to` is ever replaced.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a"), dir.path().join("b"));
/// std::fs::create_dir(&a).unwrap();
/// std::fs::create_dir(&b).unwrap();
/// let refused = berth_sys::rename::rename_noreplace(&a, &b).unwrap_err();
/// assert_eq!(refused.kind(), std::io::ErrorKind::AlreadyExists);
/// std::fs::remove_dir(&b).unwrap();
/// berth_sys::rename::rename_noreplace(&a, &b).unwrap();
/// assert!(b.is_dir() && !a.exists());
/// ```
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
    };
    let (from, to) = (path(from)?, path(to)?);
    // SAFETY: both paths are NUL-terminated strings alive for the call;
    // AT_FDCWD makes them relative to the working directory as rename(2).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
