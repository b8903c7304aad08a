//! What the agent puts into a container's OCI bundle (and state dir) for
//! the shim beyond the OCI runtime spec: berth's annotations, the prepared
//! tmpfs marker, a mount option, the compiled seccomp program's file, and
//! the overlay root layout. The agent writes them, the shim reads them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The annotation that asks berth-shim for its reaper as pid 1.
pub const INIT_ANNOTATION: &str = "berth.init";

/// The annotation that asks berth-shim for a stdin pipe and an attach
/// socket (`-i`).
pub const STDIN_ANNOTATION: &str = "berth.stdin";

/// The annotation that asks berth-shim for a pty (`-t`).
pub const TTY_ANNOTATION: &str = "berth.tty";

/// The bundle annotation that carries the [`RootOverlay`] as JSON. `runc`
/// ignores it: to run such a bundle with another runtime, mount the overlay
/// it describes on `root.path` first.
pub const OVERLAY_ANNOTATION: &str = "berth.rootfs.overlay";

/// Most lower dirs accepted (overlayfs's own limit is 500).
pub const MAX_LOWER: usize = 500;

/// The bundle names the tmpfs of secrets and config files with this
/// source, so that the shim knows to attach the prepared tmpfs it is given
/// instead of mounting an empty one (`runc` mounts an empty tmpfs there).
pub const FILES_TMPFS_SOURCE: &str = "berth-files";

/// The bundle mount option (a userspace `x-` option, which `mount(8)` and
/// the kernel never see) that makes the shim open the bind source without
/// following any symlink.
pub const NO_FOLLOW: &str = "x-berth-nofollow";

/// The bundle file holding `linux.seccomp` compiled by the agent.
pub const SECCOMP_PROGRAM_FILE: &str = "seccomp.bpf";

/// The attach socket's name in the container's state dir (`-i`).
pub const ATTACH_SOCKET: &str = "attach.sock";

/// The layout of an overlay root (decision 0024).
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

/// An [`OVERLAY_ANNOTATION`] the shim cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("annotation {OVERLAY_ANNOTATION}: {0}")]
pub struct OverlayAnnotationError(pub String);

impl RootOverlay {
    /// The [`OVERLAY_ANNOTATION`]'s value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("paths serialize")
    }

    /// Parses and checks the annotation: absolute paths, 1..=MAX_LOWER
    /// lower dirs.
    pub fn from_annotation(value: &str) -> Result<Self, OverlayAnnotationError> {
        let overlay: RootOverlay =
            serde_json::from_str(value).map_err(|e| OverlayAnnotationError(e.to_string()))?;
        if overlay.lower.is_empty() || overlay.lower.len() > MAX_LOWER {
            return Err(OverlayAnnotationError(format!(
                "needs 1 to {MAX_LOWER} lower dirs, got {}",
                overlay.lower.len()
            )));
        }
        let all = overlay.lower.iter().chain([&overlay.upper, &overlay.work]);
        for path in all {
            if !path.is_absolute() {
                return Err(OverlayAnnotationError(format!(
                    "{} is not an absolute path",
                    path.display()
                )));
            }
        }
        Ok(overlay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_annotation_round_trips() {
        for make_workdir in [false, true] {
            let overlay = RootOverlay {
                lower: vec!["/l/top".into(), "/l/base".into()],
                upper: "/c/upper".into(),
                work: "/c/work".into(),
                make_workdir,
            };
            let value = overlay.to_annotation();
            assert_eq!(value.contains("make_workdir"), make_workdir);
            assert_eq!(RootOverlay::from_annotation(&value).unwrap(), overlay);
        }
    }

    #[test]
    fn bad_overlay_annotations_are_refused() {
        let bad = [
            r#"{"lower":[],"upper":"/u","work":"/w"}"#,
            r#"{"lower":["rel"],"upper":"/u","work":"/w"}"#,
            r#"{"lower":["/l"],"upper":"u","work":"/w"}"#,
            r#"{"lower":["/l"]}"#,
        ];
        for value in bad {
            let err = RootOverlay::from_annotation(value).unwrap_err();
            assert!(err.to_string().contains(OVERLAY_ANNOTATION), "{err}");
        }
    }
}
