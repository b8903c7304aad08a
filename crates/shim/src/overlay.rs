//! The container's root as an overlay: read-only lower dirs (an image's
//! layers, or a `--rootfs` dir) under the container's own upper dir, mounted
//! by the container child inside its own mount namespace (see decision 0024),
//! or built by the agent as a detached mount ([`detached`], decision 0046)
//! that the child moves onto its root.
//!
//! The agent writes the layout ([`RootOverlay`], berth-protocol's) into the
//! bundle as an annotation; the shim reads it back from there. Nothing is mounted on the host, so a dead
//! container leaves no mount to clean up.
//!
//! The overlay is `volatile` where the kernel has it (see [`mount_overlay`]).
//!
//! Mount options are limited to one page. Every dir is opened first and
//! named by its fd number relative to `/proc/self/fd` (the child's cwd
//! during the mount), so each layer costs about four bytes of options:
//! hundreds of layers fit, and no path needs escaping.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_protocol::bundle::OverlayAnnotationError;
pub use berth_protocol::bundle::RootOverlay;
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OverlayError {
    #[error(transparent)]
    Annotation(#[from] OverlayAnnotationError),
    #[error("open overlay dir {path}: {errno}")]
    Open { path: PathBuf, errno: Errno },
    #[error("mount the overlay root on {target} ({layers} lower dirs): {errno}")]
    Mount {
        target: PathBuf,
        layers: usize,
        errno: Errno,
    },
    #[error("chdir {path}: {errno}")]
    Chdir { path: PathBuf, errno: Errno },
    #[error("build the overlay root as a detached mount: {step}: {source}")]
    Detached {
        step: String,
        #[source]
        source: std::io::Error,
    },
}

/// The longest value `fsconfig` takes for one option.
const FSCONFIG_VALUE_MAX: usize = 255;

/// The overlay as a detached mount (`nosuid,nodev`, `volatile` where the
/// kernel has it), for the container child to move onto its root: the
/// agent builds it while the shim starts (decision 0046), so its ~0.5 ms
/// is off the launch's critical path. Layers are named `/proc/self/fd/N`
/// of descriptors opened here. Fails where the kernel has no new mount
/// API, or the lower dirs do not fit one `fsconfig` value: the child then
/// mounts the overlay itself ([`mount_overlay`]).
pub fn detached(overlay_root: &RootOverlay) -> Result<OwnedFd, OverlayError> {
    use berth_sys::fs_context::{FsContext, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID};
    let fail = |step: &str, source| OverlayError::Detached {
        step: step.to_string(),
        source,
    };
    let fds = open_layers(overlay_root)?;
    let names: Vec<String> = (fds.iter())
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .collect();
    let (lower, rest) = names.split_at(overlay_root.lower.len());
    let lower = lower.join(":");
    if lower.len() > FSCONFIG_VALUE_MAX {
        return Err(fail(
            "lowerdir",
            std::io::Error::other(format!("{} bytes for one fsconfig value", lower.len())),
        ));
    }
    // As in `mount_overlay`: a restart's old volatile marker blocks the
    // mount.
    let _ = std::fs::remove_dir(overlay_root.work.join("work/incompat/volatile"));
    let fs = FsContext::open("overlay").map_err(|e| fail("fsopen", e))?;
    // "overlay" as the source, as `mount_overlay` (and Docker) show it.
    for (key, value) in [
        ("source", "overlay"),
        ("lowerdir", &lower),
        ("upperdir", &rest[0]),
        ("workdir", &rest[1]),
    ] {
        fs.set_string(key, value).map_err(|e| fail(key, e))?;
    }
    // See `mount_overlay` for why; older kernels refuse it.
    let _ = fs.set_flag("volatile");
    fs.mount(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
        .map_err(|(step, e)| fail(step, e))
}

/// Mounts the overlay on `target`, `nosuid,nodev`. Changes the cwd
/// (to `/proc/self/fd` and back to `/`): only for the container child,
/// before its pivot.
pub fn mount_overlay(overlay_root: &RootOverlay, target: &Path) -> Result<(), OverlayError> {
    let fds = open_layers(overlay_root)?;
    let names: Vec<String> = fds.iter().map(|fd| fd.as_raw_fd().to_string()).collect();
    let (lower, rest) = names.split_at(overlay_root.lower.len());
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        rest[0],
        rest[1]
    );
    // A volatile overlay left from an earlier run of this container
    // (a restart) blocks a new volatile mount until this dir is gone;
    // nothing of it is needed: the container's processes are gone.
    let _ = std::fs::remove_dir(overlay_root.work.join("work/incompat/volatile"));
    let fd_dir = Path::new("/proc/self/fd");
    nix::unistd::chdir(fd_dir).map_err(|errno| OverlayError::Chdir {
        path: fd_dir.into(),
        errno,
    })?;
    let overlay = |data: &str| {
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data),
        )
    };
    // `volatile` (Linux 5.10+): the overlay never syncs its upper dir.
    // Without it, the unmount when the container's mount namespace goes
    // syncs the whole filesystem of the upper dir (measured: 40 ms to
    // 0.9 s on a busy host, at every container exit). The container's
    // writes stay in the page cache like any file's; a host crash ends
    // every container anyway. Older kernels refuse the option: mount
    // without it.
    let mounted = match overlay(&format!("{data},volatile")) {
        Err(Errno::EINVAL) => overlay(&data),
        other => other,
    };
    let back = nix::unistd::chdir("/");
    mounted.map_err(|errno| OverlayError::Mount {
        target: target.into(),
        layers: overlay_root.lower.len(),
        errno,
    })?;
    back.map_err(|errno| OverlayError::Chdir {
        path: "/".into(),
        errno,
    })?;
    Ok(())
}

/// The lower dirs, then the upper and the work dir, opened `O_PATH`.
fn open_layers(overlay_root: &RootOverlay) -> Result<Vec<OwnedFd>, OverlayError> {
    (overlay_root.lower.iter())
        .chain([&overlay_root.upper, &overlay_root.work])
        .map(|path| open_dir(path))
        .collect()
}

fn open_dir(path: &Path) -> Result<OwnedFd, OverlayError> {
    let err = |errno| OverlayError::Open {
        path: path.into(),
        errno,
    };
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| err(Errno::EINVAL))?;
    // SAFETY: nul-terminated path; the returned fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(err(Errno::last()));
    }
    // SAFETY: fresh fd from open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
