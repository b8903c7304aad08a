//! The default `/dev` content when the spec mounts a fresh tmpfs on `/dev`.
//!
//! Device nodes are made with `mknod` (the host node's type, number and
//! mode), as runc does outside a user namespace; where mknod is not allowed
//! (a user namespace) they are bind mounts of the host's nodes onto empty
//! files. A node is one syscall, a bind mount five (decision 0044).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use thiserror::Error;

use super::resolve::{self, ResolveError};

/// The devices every container gets, as in runc's `AllowedDevices`.
const DEFAULT_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// `/dev` symlinks: (name, target).
const DEFAULT_SYMLINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("bind host device {host} onto {target}: {errno}")]
    Bind {
        host: PathBuf,
        target: PathBuf,
        errno: Errno,
    },
    #[error("create symlink {link} -> {target}: {source}")]
    Symlink {
        link: PathBuf,
        target: String,
        source: io::Error,
    },
}

/// Makes `name` in `dev` a copy of the host's character device `node`: its
/// number and permission bits, owned by root.
fn make_node(dev: &OwnedFd, name: &str, node: &std::fs::Metadata) -> Result<(), Errno> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !node.file_type().is_char_device() {
        return Err(Errno::EINVAL);
    }
    let c_name = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mode = node.mode() & 0o777;
    // SAFETY: a valid dirfd and a nul-terminated name.
    let rc = unsafe {
        libc::mknodat(
            dev.as_raw_fd(),
            c_name.as_ptr(),
            libc::S_IFCHR | mode,
            node.rdev() as libc::dev_t,
        )
    };
    Errno::result(rc)?;
    // The umask may have taken bits off: set them as the host has them.
    // SAFETY: a valid dirfd and a nul-terminated name.
    let rc = unsafe { libc::fchmodat(dev.as_raw_fd(), c_name.as_ptr(), mode, 0) };
    Errno::result(rc).map(drop)
}

/// Creates the default devices and symlinks in the container's `/dev`.
pub fn create_defaults(root: &OwnedFd) -> Result<(), DeviceError> {
    let dev = resolve::open(root, Path::new("/dev"), libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let mut mknod_allowed = true;
    for name in DEFAULT_DEVICES {
        let host = Path::new("/dev").join(name);
        let Ok(node) = std::fs::metadata(&host) else {
            continue;
        };
        if mknod_allowed {
            match make_node(&dev, name, &node) {
                Ok(()) => continue,
                // A user namespace: bind mounts from here on.
                Err(Errno::EPERM) => mknod_allowed = false,
                // Something there already (a spec mount): bound over, as
                // before.
                Err(_) => {}
            }
        }
        let dest = Path::new("/dev").join(name);
        resolve::create_file(root, &dest)?;
        let target = resolve::open(root, &dest, libc::O_PATH, 0)?;
        mount(
            Some(&host),
            &resolve::proc_fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|errno| DeviceError::Bind {
            host: host.clone(),
            target: dest,
            errno,
        })?;
    }

    for (name, target) in DEFAULT_SYMLINKS {
        let link = Path::new("/dev").join(name);
        let c_name = CString::new(name.as_bytes()).expect("static name");
        let c_target = CString::new(Path::new(target).as_os_str().as_bytes()).expect("static");
        // SAFETY: valid dirfd and nul-terminated strings.
        let rc = unsafe { libc::symlinkat(c_target.as_ptr(), dev.as_raw_fd(), c_name.as_ptr()) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            // An existing entry (e.g. a spec mount on /dev/ptmx) wins.
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(DeviceError::Symlink {
                    link,
                    target: target.to_string(),
                    source: err,
                });
            }
        }
    }
    Ok(())
}
