//! A loop-backed XFS filesystem mounted with `prjquota` in a test's temp
//! dir, for the disk isolator's xfs backend and XFS-quota volumes. Made
//! with `mkfs.xfs` (xfsprogs) on a sparse 300 MiB image (mkfs.xfs's
//! smallest) and attached with `losetup`; unmounted and detached on drop.
//!
//! A kernel without XFS quota support (CONFIG_XFS_QUOTA; this dev host and
//! the CI host) is a missing kernel feature: skipped loudly, never a
//! failure. The cgroup v2 VM's Debian kernel has it (`.ci/v2-vm/suite.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Sparse: only what XFS writes takes space.
const IMAGE_SIZE: &str = "300M";

pub struct XfsMount {
    /// The mount point: an XFS filesystem mounted with `prjquota`.
    pub path: PathBuf,
    device: String,
    dir: Option<tempfile::TempDir>,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether the running kernel has XFS quota support (the xfs module is
/// loaded by the first XFS mount, so ask after one).
pub fn kernel_has_xfs_quota() -> bool {
    Path::new("/proc/fs/xfs/xqm").exists()
}

/// A fresh XFS filesystem mounted with `prjquota`, or `None` after a skip
/// naming `test`: without `mkfs.xfs` (a CI failure: `.ci/run` installs
/// xfsprogs), or on a kernel without XFS quota (never a failure).
pub fn mount_prjquota(test: &str) -> Option<XfsMount> {
    if run(Command::new("mkfs.xfs").arg("-V")).is_err() {
        crate::common::skip(test, "mkfs.xfs not found (install xfsprogs)");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("berth-xfs-")
        .tempdir()
        .unwrap();
    let image = dir.path().join("xfs.img");
    let path = dir.path().join("mnt");
    std::fs::create_dir(&path).unwrap();
    run(Command::new("truncate")
        .args(["-s", IMAGE_SIZE])
        .arg(&image))
    .unwrap();
    run(Command::new("mkfs.xfs").arg("-q").arg(&image)).unwrap();
    let device = run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image))
    .unwrap_or_else(|e| panic!("attach {}: {e}", image.display()));
    let mount = XfsMount {
        path,
        device,
        dir: Some(dir),
    };
    let mounted = run(Command::new("mount")
        .args(["-t", "xfs", "-o", "prjquota", &mount.device])
        .arg(&mount.path));
    if let Err(e) = mounted {
        if !kernel_has_xfs_quota() {
            crate::common::skip_missing_kernel_feature(
                test,
                "the kernel has no XFS quota support (CONFIG_XFS_QUOTA, /proc/fs/xfs/xqm)",
            );
            return None;
        }
        panic!("mount XFS with prjquota: {e}");
    }
    // 0755: containers running as other users reach their sandboxes.
    std::fs::set_permissions(
        &mount.path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    Some(mount)
}

impl XfsMount {
    /// The loop device holding the filesystem.
    pub fn device(&self) -> &str {
        &self.device
    }
}

impl Drop for XfsMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = Command::new("losetup")
            .args(["-d", &self.device])
            .stdin(Stdio::null())
            .status();
        drop(self.dir.take());
    }
}
