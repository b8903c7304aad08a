//! The default `/dev` content when the spec mounts a fresh tmpfs on `/dev`.
//!
//! Device nodes are bind mounts of the host's nodes onto empty files rather
//! than `mknod`, so the same code keeps working where mknod is not allowed
//! (a user namespace, a nodev mount).

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

/// Creates the default devices and symlinks in the container's `/dev`.
pub fn create_defaults(root: &OwnedFd) -> Result<(), DeviceError> {
    for name in DEFAULT_DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
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

    let dev = resolve::open(root, Path::new("/dev"), libc::O_PATH | libc::O_DIRECTORY, 0)?;
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
