//! The container's root as an overlay: read-only lower dirs (an image's
//! layers, or a `--rootfs` dir) under the container's own upper dir, mounted
//! by the container child inside its own mount namespace (see decision 0024).
//!
//! The agent writes the layout into the bundle as the [`ANNOTATION`]; the
//! shim reads it back from there. Nothing is mounted on the host, so a dead
//! container leaves no mount to clean up.
//!
//! The overlay is `volatile` where the kernel has it (see [`RootOverlay::mount`]).
//!
//! Mount options are limited to one page. Every dir is opened first and
//! named by its fd number relative to `/proc/self/fd` (the child's cwd
//! during the mount), so each layer costs about four bytes of options:
//! hundreds of layers fit, and no path needs escaping.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The bundle annotation that carries the [`RootOverlay`] as JSON. `runc`
/// ignores it: to run such a bundle with another runtime, mount the overlay
/// it describes on `root.path` first.
pub const ANNOTATION: &str = "berth.rootfs.overlay";

/// Most lower dirs accepted (overlayfs's own limit is 500).
pub const MAX_LOWER: usize = 500;

/// The layout of an overlay root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootOverlay {
    /// Read-only dirs, the TOPMOST first (overlayfs's `lowerdir` order).
    pub lower: Vec<PathBuf>,
    /// The container's writable layer.
    pub upper: PathBuf,
    /// overlayfs's work dir, on the same filesystem as `upper`.
    pub work: PathBuf,
    /// Create the process's working dir if the root lacks it (in the
    /// upper dir), as Docker does for an image's `WorkingDir`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub make_workdir: bool,
}

#[derive(Debug, Error)]
pub enum OverlayError {
    #[error("annotation {ANNOTATION}: {0}")]
    Annotation(String),
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
}

impl RootOverlay {
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("paths serialize")
    }

    /// Parses and checks the annotation: absolute paths, 1..=MAX_LOWER
    /// lower dirs.
    pub fn from_annotation(value: &str) -> Result<Self, OverlayError> {
        let overlay: RootOverlay =
            serde_json::from_str(value).map_err(|e| OverlayError::Annotation(e.to_string()))?;
        if overlay.lower.is_empty() || overlay.lower.len() > MAX_LOWER {
            return Err(OverlayError::Annotation(format!(
                "needs 1 to {MAX_LOWER} lower dirs, got {}",
                overlay.lower.len()
            )));
        }
        let all = overlay.lower.iter().chain([&overlay.upper, &overlay.work]);
        for path in all {
            if !path.is_absolute() {
                return Err(OverlayError::Annotation(format!(
                    "{} is not an absolute path",
                    path.display()
                )));
            }
        }
        Ok(overlay)
    }

    /// Mounts the overlay on `target`, `nosuid,nodev`. Changes the cwd
    /// (to `/proc/self/fd` and back to `/`): only for the container child,
    /// before its pivot.
    pub fn mount(&self, target: &Path) -> Result<(), OverlayError> {
        let mut fds = Vec::with_capacity(self.lower.len() + 2);
        for path in self.lower.iter().chain([&self.upper, &self.work]) {
            fds.push(open_dir(path)?);
        }
        let names: Vec<String> = fds.iter().map(|fd| fd.as_raw_fd().to_string()).collect();
        let (lower, rest) = names.split_at(self.lower.len());
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            rest[0],
            rest[1]
        );
        // A volatile overlay left from an earlier run of this container
        // (a restart) blocks a new volatile mount until this dir is gone;
        // nothing of it is needed: the container's processes are gone.
        let _ = std::fs::remove_dir(self.work.join("work/incompat/volatile"));
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
            layers: self.lower.len(),
            errno,
        })?;
        back.map_err(|errno| OverlayError::Chdir {
            path: "/".into(),
            errno,
        })?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_round_trips_and_is_checked() {
        let o = RootOverlay {
            lower: vec!["/l/2".into(), "/l/1".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            make_workdir: true,
        };
        assert_eq!(RootOverlay::from_annotation(&o.to_annotation()).unwrap(), o);
        let mut bad = o.clone();
        bad.lower.clear();
        assert!(RootOverlay::from_annotation(&bad.to_annotation()).is_err());
        let mut bad = o.clone();
        bad.upper = "rel".into();
        assert!(RootOverlay::from_annotation(&bad.to_annotation()).is_err());
        assert!(RootOverlay::from_annotation("{").is_err());
    }
}
