//! Inode flags (`FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS`, what `chattr` sets):
//! only the one berth uses, ext4's "top of a directory hierarchy" flag.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `FS_TOPDIR_FL` (`chattr +T`, linux/fs.h): the directory's subdirectories
/// are placed as the root's are, each in a block group of its own choosing,
/// not beside their parent.
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `dir` as the top of directory hierarchies (`chattr +T`): on ext4,
/// each new subdirectory (and the files in it) then goes to a block group
/// picked for it by the Orlov allocator, spreading unrelated trees over the
/// disk as the root's subdirectories are. `Ok(true)` when the flag is set
/// (now or already); `Ok(false)` when the filesystem has no such flag (XFS,
/// tmpfs, btrfs: they place directories their own way).
///
/// ```no_run
/// let dir = std::fs::File::open("/var/lib/berth/containers")?;
/// let spread = berth_sys::inode_flags::spread_subdirectories(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spread_subdirectories(dir: &File) -> io::Result<bool> {
    let Some(flags) = flags(dir)? else {
        return Ok(false);
    };
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(true);
    }
    let flags = flags | FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through a pointer to a live,
    // aligned c_int; the fd is borrowed for the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
    if rc < 0 {
        return unsupported(io::Error::last_os_error()).map(|()| false);
    }
    Ok(true)
}

/// Whether `dir` is marked as the top of directory hierarchies (see
/// [`spread_subdirectories`]); `Ok(false)` on a filesystem without flags.
pub fn spreads_subdirectories(dir: &File) -> io::Result<bool> {
    Ok(flags(dir)?.is_some_and(|flags| flags & FS_TOPDIR_FL != 0))
}

/// `dir`'s inode flags; `None` on a filesystem without them.
fn flags(dir: &File) -> io::Result<Option<libc::c_int>> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int (the kernel's `flags` are 32
    // bits whatever the ioctl's name says) through a pointer to a live,
    // aligned c_int; the fd is borrowed for the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    if rc < 0 {
        return unsupported(io::Error::last_os_error()).map(|()| None);
    }
    Ok(Some(flags))
}

/// A filesystem without inode flags, or without this one, answers with one
/// of these: not an error, only nothing to do. Anything else is returned.
fn unsupported(e: io::Error) -> io::Result<()> {
    match e.raw_os_error() {
        Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(()),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_set_where_the_filesystem_has_it_and_nothing_fails_where_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::open(dir.path()).unwrap();
        assert!(!spreads_subdirectories(&file).unwrap(), "a new dir");
        let set = spread_subdirectories(&file).unwrap();
        // ext4 (and ext2/3) keep it; elsewhere nothing was set, and saying
        // so is no error.
        assert_eq!(spreads_subdirectories(&file).unwrap(), set);
        // Set again: no change, no error.
        assert_eq!(spread_subdirectories(&file).unwrap(), set);
        // SAFETY: an all-zero statfs is a valid value for fstatfs to fill.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatfs writes one statfs through a pointer to a live
        // one; the fd is borrowed for the call.
        assert_eq!(unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) }, 0);
        // ext2, ext3 and ext4 share the magic.
        if fs.f_type == libc::EXT4_SUPER_MAGIC {
            assert!(set, "ext4 has chattr +T");
        }
    }
}
