//! The container's root: a private recursive bind of `root.path`, nosuid and
//! nodev (and optionally read-only) as a whole tree, and the final
//! `pivot_root`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, fchdir, pivot_root};
use thiserror::Error;

use super::mounts::{self, MountError, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
use super::overlay::{OverlayError, RootOverlay};

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("make / rslave: {0}")]
    Propagation(Errno),
    #[error("bind rootfs {path} onto itself: {errno}")]
    Bind { path: PathBuf, errno: Errno },
    #[error("move the agent's overlay root onto {path}: {errno}")]
    Attach { path: PathBuf, errno: Errno },
    #[error("open rootfs {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("rootfs {0} is not reachable through its bind mount")]
    NotStacked(PathBuf),
    #[error("make rootfs nosuid, nodev (and read-only if asked): {0}")]
    Attributes(#[source] MountError),
    #[error("pivot_root into the rootfs: {0}")]
    Pivot(Errno),
    #[error("detach the old root: {0}")]
    Detach(Errno),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error("make the overlay root read-only: {0}")]
    Seal(Errno),
}

/// Makes the whole mount namespace a slave of the host's (runc's default
/// `rootfsPropagation`), so nothing we mount propagates back to the host,
/// and binds the rootfs onto itself. Returns a dirfd of the new root mount,
/// made read-only recursively when `readonly`.
///
/// Slave, not private: when the host unmounts something (another
/// container's loop-mounted sandbox, say), the unmount reaches this
/// namespace too, instead of this copy pinning the filesystem and its loop
/// device until the container ends.
///
/// With `overlay`, the overlay is mounted on `rootfs` instead of the bind
/// (or `prepared`, the agent's detached mount of it, is moved there), and
/// stays writable here: the mount points the spec needs are made in the
/// container's upper dir, and [`seal_readonly`] makes the root read-only
/// afterwards when asked.
pub fn prepare(
    rootfs: &Path,
    readonly: bool,
    overlay: Option<&RootOverlay>,
    prepared: Option<std::os::fd::RawFd>,
) -> Result<OwnedFd, RootfsError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(RootfsError::Propagation)?;

    let before = mount_id(libc::AT_FDCWD, rootfs, 0)?;
    match (overlay, prepared) {
        (Some(_), Some(tree)) => {
            let target = open_dir(rootfs)?;
            mounts::attach_tree(tree, &target).map_err(|errno| RootfsError::Attach {
                path: rootfs.into(),
                errno,
            })?;
        }
        (Some(overlay), None) => super::overlay::mount_overlay(overlay, rootfs)?,
        (None, _) => mount(
            Some(rootfs),
            rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|errno| RootfsError::Bind {
            path: rootfs.into(),
            errno,
        })?,
    }

    // Looking up a path crosses onto a mount stacked on its last component,
    // but the lookup of "/" itself starts at the process's root and never
    // does. "/.." does: `..` at the root stays there and then follows the
    // mounts stacked on it.
    let open_at = if rootfs == Path::new("/") {
        PathBuf::from("/..")
    } else {
        rootfs.to_path_buf()
    };
    let root = open_dir(&open_at)?;
    let after = mount_id(root.as_raw_fd(), Path::new(""), libc::AT_EMPTY_PATH)?;
    if before == after {
        return Err(RootfsError::NotStacked(rootfs.into()));
    }

    // Before the spec's mounts: those stay as the spec says, but every host
    // submount the recursive bind brought along (say /run when the rootfs is
    // the host's /) must get the flags too, which a single MS_REMOUNT of the
    // top mount would not do. nosuid and nodev always (the OCI root has no
    // field for them): a setuid file or a device node shipped in a rootfs
    // gives nothing; the container's devices come from its own /dev.
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if readonly && overlay.is_none() {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    mounts::set_attr_recursive(&root, attrs, 0, rootfs).map_err(RootfsError::Attributes)?;
    Ok(root)
}

/// Makes the root mount alone read-only (its submounts, `/tmp` say, keep
/// their own flags): for an overlay root once its mount points exist.
pub fn seal_readonly(root: &OwnedFd) -> Result<(), RootfsError> {
    let attr = mounts::MountAttr::set(MOUNT_ATTR_RDONLY);
    // SAFETY: valid fd, empty nul-terminated path and a correctly sized attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            root.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const _,
            std::mem::size_of_val(&attr),
        )
    };
    if rc < 0 {
        return Err(RootfsError::Seal(Errno::last()));
    }
    Ok(())
}

/// Switches to the new root and detaches the old one.
pub fn pivot(root: &OwnedFd) -> Result<(), RootfsError> {
    fchdir(root).map_err(RootfsError::Pivot)?;
    // pivot_root(".", ".") stacks the old root on top of the new one at "/";
    // unmounting "." then removes exactly the old root, and needs no
    // directory for it in a maybe read-only rootfs.
    pivot_root(".", ".").map_err(RootfsError::Pivot)?;
    umount2(".", MntFlags::MNT_DETACH).map_err(RootfsError::Detach)?;
    chdir("/").map_err(RootfsError::Pivot)?;
    Ok(())
}

fn open_dir(path: &Path) -> Result<OwnedFd, RootfsError> {
    let c = cstring(path)?;
    // SAFETY: nul-terminated path; the returned fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(RootfsError::Open {
            path: path.into(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: fresh fd from open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn mount_id(dirfd: i32, path: &Path, flags: i32) -> Result<u64, RootfsError> {
    let c = cstring(path)?;
    // SAFETY: statx is plain data; all zeroes is a valid value.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx fills the buffer; the path is a valid C string and
    // both outlive the call.
    let rc = unsafe { libc::statx(dirfd, c.as_ptr(), flags, libc::STATX_MNT_ID, &mut buf) };
    if rc < 0 {
        return Err(RootfsError::Open {
            path: path.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(buf.stx_mnt_id)
}

fn cstring(path: &Path) -> Result<CString, RootfsError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| RootfsError::Open {
        path: path.into(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })
}
