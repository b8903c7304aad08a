//! Creating the spec's `linux.devices` nodes (devices passed through with
//! `--device`) in the container's root with `mknod`, before `pivot_root`.
//!
//! The shim is root with every capability at this point; the node's access
//! is then up to the devices cgroup, which allows exactly these nodes.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use thiserror::Error;

use super::resolve::{self, ResolveError};

#[derive(Debug, Error)]
pub enum DeviceNodeError {
    #[error("linux.devices: {path}: type {kind} is not a character or block device")]
    Type { path: PathBuf, kind: String },
    #[error("linux.devices: path must be absolute and name a file: {0}")]
    Path(PathBuf),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{op} device node {path}: {source}")]
    Create {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// One `linux.devices` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNodeSpec {
    pub path: PathBuf,
    /// `S_IFCHR` or `S_IFBLK`.
    pub kind: libc::mode_t,
    pub major: u32,
    pub minor: u32,
    pub mode: libc::mode_t,
    pub uid: u32,
    pub gid: u32,
}

impl DeviceNodeSpec {
    pub fn from_oci(device: &LinuxDevice) -> Result<Self, DeviceNodeError> {
        let path = device.path().clone();
        if !path.is_absolute() || path.file_name().is_none() {
            return Err(DeviceNodeError::Path(path));
        }
        let kind = match device.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            other => {
                return Err(DeviceNodeError::Type {
                    path,
                    kind: format!("{other:?}"),
                })
            }
        };
        Ok(DeviceNodeSpec {
            path,
            kind,
            major: device.major() as u32,
            minor: device.minor() as u32,
            mode: device.file_mode().unwrap_or(0o666) & 0o7777,
            uid: device.uid().unwrap_or(0),
            gid: device.gid().unwrap_or(0),
        })
    }
}

/// Creates each node (and its parent directories) under `root`.
pub fn create(root: &OwnedFd, nodes: &[DeviceNodeSpec]) -> Result<(), DeviceNodeError> {
    for node in nodes {
        create_one(root, node)?;
    }
    Ok(())
}

fn create_one(root: &OwnedFd, node: &DeviceNodeSpec) -> Result<(), DeviceNodeError> {
    let parent = node.path.parent().unwrap_or(Path::new("/"));
    let dir = resolve::dir(root, parent)?;
    let name = node.path.file_name().expect("checked in from_oci");
    let name = CString::new(name.as_bytes()).map_err(|_| ResolveError::Nul(node.path.clone()))?;
    let fail = |op| {
        let source = io::Error::last_os_error();
        move || DeviceNodeError::Create {
            op,
            path: node.path.clone(),
            source,
        }
    };
    let dev = libc::makedev(node.major, node.minor);
    // mknod: the node, in the directory we resolved inside the root.
    // SAFETY: valid dirfd and nul-terminated single component.
    if unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), node.kind | node.mode, dev) } < 0 {
        return Err(fail("mknod")());
    }
    // chmod: mknod's mode went through the umask.
    // SAFETY: as above; the name is the node just made (nothing runs in
    // the container yet that could swap it).
    if unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), node.mode, 0) } < 0 {
        return Err(fail("chmod")());
    }
    // chown: the owner the spec asks for, never following a symlink.
    // SAFETY: as above.
    let rc = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            node.uid,
            node.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        return Err(fail("chown")());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_entries_become_node_specs() {
        let device: LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": "/dev/kvm", "type": "c", "major": 10, "minor": 232,
            "fileMode": 0o660, "uid": 0, "gid": 36
        }))
        .unwrap();
        let spec = DeviceNodeSpec::from_oci(&device).unwrap();
        assert_eq!(
            (spec.kind, spec.major, spec.minor, spec.mode, spec.gid),
            (libc::S_IFCHR, 10, 232, 0o660, 36)
        );
        let fifo: LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": "/dev/f", "type": "p"
        }))
        .unwrap();
        assert!(DeviceNodeSpec::from_oci(&fifo).is_err());
    }
}
