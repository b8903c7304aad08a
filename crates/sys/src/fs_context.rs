//! A filesystem made with the new mount API and left detached: `fsopen`,
//! `fsconfig`, `fsmount` (Linux 5.2+). The mount is attached nowhere: it
//! lives while a descriptor or a mount namespace it is moved into holds it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `mount_attr` flags of `fsmount(2)` and `mount_setattr(2)`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// A filesystem being configured (`fsopen`'s descriptor).
#[derive(Debug)]
pub struct FsContext(OwnedFd);

impl FsContext {
    /// Starts configuring a new filesystem of type `fstype` (`tmpfs`,
    /// `overlay`). `ENOSYS` on kernels without the new mount API.
    pub fn open(fstype: &str) -> io::Result<FsContext> {
        let fstype = cstring(fstype)?;
        // SAFETY: a nul-terminated fs name; the fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
        Ok(FsContext(owned(fd)?))
    }

    /// Sets `key=value`.
    pub fn set_string(&self, key: &str, value: &str) -> io::Result<()> {
        let (key, value) = (cstring(key)?, cstring(value)?);
        self.config(FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr())
    }

    /// Sets the flag option `key`.
    pub fn set_flag(&self, key: &str) -> io::Result<()> {
        let key = cstring(key)?;
        self.config(FSCONFIG_SET_FLAG, key.as_ptr(), std::ptr::null())
    }

    /// Creates the superblock and returns a detached mount of it with
    /// `attrs` (`MOUNT_ATTR_*`). The error says which of the two failed.
    pub fn mount(self, attrs: u64) -> Result<OwnedFd, (&'static str, io::Error)> {
        self.config(FSCONFIG_CMD_CREATE, std::ptr::null(), std::ptr::null())
            .map_err(|e| ("create", e))?;
        // SAFETY: a valid fs context fd; the mount fd is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs as libc::c_uint,
            )
        };
        owned(fd).map_err(|e| ("fsmount", e))
    }

    fn config(
        &self,
        cmd: libc::c_uint,
        key: *const libc::c_char,
        value: *const libc::c_char,
    ) -> io::Result<()> {
        // SAFETY: a valid fd; key and value are nul-terminated strings that
        // outlive the call, or null where the command takes none.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                cmd,
                key,
                value,
                0 as libc::c_int,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_tmpfs_takes_its_options_and_refuses_unknown_ones() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIPPED: a_detached_tmpfs_takes_its_options_and_refuses_unknown_ones: needs root"
            );
            assert!(std::env::var_os("CI").is_none(), "needs root under CI");
            return;
        }
        let fs = FsContext::open("tmpfs").unwrap();
        fs.set_string("size", "65536").unwrap();
        assert_eq!(
            fs.set_string("no_such_option", "1")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
        let root = fs.mount(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV).unwrap();
        // A directory, writable through the descriptor, mounted nowhere.
        let probe = format!("/proc/self/fd/{}/probe", root.as_raw_fd());
        std::fs::write(&probe, "x").unwrap();
        assert_eq!(std::fs::read_to_string(&probe).unwrap(), "x");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains("size=64k"), "{mountinfo}");
        assert!(FsContext::open("no-such-fs").is_err());
    }
}
