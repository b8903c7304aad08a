//! The loop backend: a sandbox that is its own ext4 filesystem, of the
//! quota's size, so writes past the quota fail with ENOSPC and the
//! container carries on.
//!
//! The filesystem is mounted onto the sandbox dir in `prepare`, before the
//! shim starts, so the container and its logs write into it. At cleanup its
//! contents are copied out next to the image, the filesystem unmounted (the
//! loop device, attached with autoclear, frees itself), the contents moved
//! into the now plain sandbox dir, and the image deleted: the sandbox stays
//! inspectable as with the other backends.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::copy::{copy_tree, move_entries};
use crate::error::DiskError;
use crate::image::{self, MAX_ATTEMPTS};
use crate::loop_device::{self, LoopDevice};
use crate::mountinfo;

/// Where a container's image and staging dir live: beside the sandboxes,
/// never inside them (the container must not reach its own image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopPaths {
    /// The sandbox dir, the mount point.
    pub sandbox: PathBuf,
    /// `<work_dir>/disk-images/<id>.img`.
    pub image: PathBuf,
    /// `<work_dir>/disk-images/<id>.out`: the sandbox's contents between
    /// the unmount and the move back.
    pub staging: PathBuf,
}

impl LoopPaths {
    /// The paths for container `id` of the agent with `work_dir`.
    pub fn new(work_dir: &Path, id: &str, sandbox: &Path) -> Self {
        let images = images_dir(work_dir);
        LoopPaths {
            sandbox: sandbox.to_path_buf(),
            image: images.join(format!("{id}.img")),
            staging: images.join(format!("{id}.out")),
        }
    }
}

/// `<work_dir>/disk-images`.
pub fn images_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("disk-images")
}

/// Makes the image, mounts it on the sandbox, and gives its root the
/// sandbox dir's owner and mode. On error nothing is left: no mount, no
/// attached device, no image.
pub fn set_up(paths: &LoopPaths, quota: u64) -> Result<(), DiskError> {
    let sandbox_meta = paths
        .sandbox
        .metadata()
        .map_err(|e| DiskError::io("stat", &paths.sandbox, e))?;
    let dir = paths.image.parent().expect("image path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| DiskError::io("create", dir, e))?;
    let result = mount_sized(paths, quota).and_then(|()| {
        let root = &paths.sandbox;
        // mkfs leaves a lost+found: the sandbox should look like a plain dir.
        let _ = std::fs::remove_dir(root.join("lost+found"));
        std::os::unix::fs::chown(root, Some(sandbox_meta.uid()), Some(sandbox_meta.gid()))
            .map_err(|e| DiskError::io("chown", root, e))?;
        std::fs::set_permissions(
            root,
            std::fs::Permissions::from_mode(sandbox_meta.mode() & 0o7777),
        )
        .map_err(|e| DiskError::io("chmod", root, e))
    });
    if let Err(e) = result {
        let _ = unmount(&paths.sandbox);
        release_devices(&paths.image);
        let _ = std::fs::remove_file(&paths.image);
        return Err(e);
    }
    Ok(())
}

/// Makes, attaches and mounts images until one has the right usable size;
/// it stays mounted.
fn mount_sized(paths: &LoopPaths, quota: u64) -> Result<(), DiskError> {
    let mut size = image::first_guess(quota);
    for attempt in 1..=MAX_ATTEMPTS {
        image::create(&paths.image, size)?;
        image::mkfs(&paths.image)?;
        let device = LoopDevice::attach(&paths.image)?;
        mount(
            Some(device.path()),
            &paths.sandbox,
            Some("ext4"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|e| DiskError::io("mount", &paths.sandbox, e.into()))?;
        // The mount holds the device now: closing ours leaves it attached
        // until the unmount (autoclear).
        drop(device);
        let usable = usable_bytes(&paths.sandbox)?;
        let next = image::next_size(size, quota, usable);
        match next {
            None => return Ok(()),
            Some(_) if usable <= quota && attempt == MAX_ATTEMPTS => return Ok(()),
            Some(next) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(size, usable, quota, next, "disk: image resized");
                unmount(&paths.sandbox)?;
                size = next;
            }
            Some(_) => {
                return Err(DiskError::Sizing {
                    quota,
                    size,
                    usable,
                })
            }
        }
    }
    unreachable!("the last attempt returns")
}

fn statfs(path: &Path) -> Result<nix::sys::statvfs::Statvfs, DiskError> {
    nix::sys::statvfs::statvfs(path).map_err(|e| DiskError::io("statfs", path, e.into()))
}

/// The filesystem's size without its metadata, as `df` shows it.
pub fn usable_bytes(mount_point: &Path) -> Result<u64, DiskError> {
    let st = statfs(mount_point)?;
    Ok(st.blocks() * st.fragment_size())
}

/// Bytes in use, as `df` shows it (`f_blocks - f_bfree`).
pub fn used_bytes(mount_point: &Path) -> Result<u64, DiskError> {
    let st = statfs(mount_point)?;
    Ok(st.blocks().saturating_sub(st.blocks_free()) * st.fragment_size())
}

/// Whether the sandbox has its filesystem mounted.
pub fn is_mounted(sandbox: &Path) -> Result<bool, DiskError> {
    Ok(mountinfo::is_mount_point(&mountinfo::read()?, sandbox))
}

/// Copies the contents out, unmounts, moves the contents back into the
/// plain sandbox dir and deletes the image. Idempotent: a sandbox not
/// mounted (already released) only has its leftovers removed.
///
/// If the copy fails (the work dir full, say) the filesystem is still
/// unmounted and released, but the image is kept so nothing is lost; the
/// error names it.
pub fn tear_down(paths: &LoopPaths) -> Result<(), DiskError> {
    if is_mounted(&paths.sandbox)? {
        if paths.staging.exists() {
            // A half-done earlier attempt: start the copy afresh. A copy
            // of the container's tree: removed confined, like the tree.
            berth_confined::remove_tree(&paths.staging)
                .map_err(|e| DiskError::io("remove", &paths.staging, e.into()))?;
        }
        let copied = copy_tree(&paths.sandbox, &paths.staging);
        unmount(&paths.sandbox)?;
        release_devices(&paths.image);
        if let Err(e) = copied {
            let _ = berth_confined::remove_tree(&paths.staging);
            return Err(DiskError::Io {
                op: "copy the sandbox out of its image (image kept)",
                path: paths.image.clone(),
                source: std::io::Error::other(e.to_string()),
            });
        }
        // The mount point dir gets the filesystem root's owner and mode,
        // which the container may have changed.
        let root = paths
            .staging
            .metadata()
            .map_err(|e| DiskError::io("stat", &paths.staging, e))?;
        move_entries(&paths.staging, &paths.sandbox)?;
        let _ = std::os::unix::fs::chown(&paths.sandbox, Some(root.uid()), Some(root.gid()));
        let _ = std::fs::set_permissions(
            &paths.sandbox,
            std::fs::Permissions::from_mode(root.mode() & 0o7777),
        );
    } else {
        release_devices(&paths.image);
        if paths.staging.exists() {
            // The unmount happened but the move did not finish.
            move_entries(&paths.staging, &paths.sandbox)?;
        }
    }
    match std::fs::remove_file(&paths.image) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DiskError::io("remove", &paths.image, e)),
    }
}

/// Mounts an existing image (made by [`set_up`]) on `mount_point` again,
/// `nosuid,nodev`: a named volume's filesystem after a reboot or once it
/// was moved into place.
pub fn mount_image(image: &Path, mount_point: &Path) -> Result<(), DiskError> {
    let device = LoopDevice::attach(image)?;
    mount(
        Some(device.path()),
        mount_point,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| DiskError::io("mount", mount_point, e.into()))
}

/// Unmounts `mount_point` (lazily if busy) and waits for the loop device
/// of `image` to be released; the image is kept.
pub fn unmount_image(image: &Path, mount_point: &Path) -> Result<(), DiskError> {
    unmount(mount_point)?;
    release_devices(image);
    Ok(())
}

/// Unmounts the sandbox; if something still has files open in it (a log
/// reader), detaches it lazily: it goes away when they close.
fn unmount(sandbox: &Path) -> Result<(), DiskError> {
    match umount2(sandbox, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            tracing::warn!(sandbox = %sandbox.display(), "disk: sandbox busy; detaching it lazily");
            umount2(sandbox, MntFlags::MNT_DETACH)
                .map_err(|e| DiskError::io("unmount", sandbox, e.into()))
        }
        Err(e) => Err(DiskError::io("unmount", sandbox, e.into())),
    }
}

/// Waits for autoclear to detach the devices of `image`, and detaches any
/// left (an unmount's release of the device can lag a little).
fn release_devices(image: &Path) {
    for _ in 0..100 {
        if loop_device::devices_backed_by(image).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for device in loop_device::devices_backed_by(image) {
        if let Ok(file) = std::fs::File::open(&device) {
            loop_device::clear(&file);
        }
        tracing::warn!(device = %device.display(), image = %image.display(), "disk: loop device still attached; cleared");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with_loop(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions.
        let ok = unsafe { libc::geteuid() } == 0
            && Path::new(loop_device::LOOP_CONTROL).exists()
            && std::process::Command::new("mkfs.ext4")
                .arg("-V")
                .output()
                .is_ok();
        if !ok {
            berth_cgroups::testing::skip(
                &format!("loop_fs::{test}"),
                "needs root, loop devices and mkfs.ext4",
            );
        }
        ok
    }

    #[test]
    fn paths_are_beside_the_sandboxes() {
        let paths = LoopPaths::new(Path::new("/w"), "web-1", Path::new("/w/containers/web-1"));
        assert_eq!(paths.image, Path::new("/w/disk-images/web-1.img"));
        assert_eq!(paths.staging, Path::new("/w/disk-images/web-1.out"));
    }

    #[test]
    fn a_full_cycle_limits_writes_and_keeps_the_files() {
        if !root_with_loop("a_full_cycle_limits_writes_and_keeps_the_files") {
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let sandbox = work.path().join("containers/c1");
        std::fs::create_dir_all(&sandbox).unwrap();
        std::fs::set_permissions(&sandbox, std::fs::Permissions::from_mode(0o750)).unwrap();
        let paths = LoopPaths::new(work.path(), "c1", &sandbox);
        let quota = 8 << 20;
        set_up(&paths, quota).unwrap();
        let guard = Guard(&paths);

        assert!(is_mounted(&sandbox).unwrap());
        let usable = usable_bytes(&sandbox).unwrap();
        assert!(
            usable <= quota && usable + image::tolerance(quota) >= quota,
            "{usable}"
        );
        assert!(!sandbox.join("lost+found").exists());
        assert_eq!(sandbox.metadata().unwrap().mode() & 0o7777, 0o750);
        std::fs::write(sandbox.join("stdout"), "kept\n").unwrap();
        let err = std::fs::write(sandbox.join("big"), vec![0u8; 16 << 20]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(used_bytes(&sandbox).unwrap() <= quota);

        tear_down(&paths).unwrap();
        drop(guard);
        assert!(!is_mounted(&sandbox).unwrap());
        assert!(!paths.image.exists());
        assert!(!paths.staging.exists());
        assert!(loop_device::devices_backed_by(&paths.image).is_empty());
        assert_eq!(
            std::fs::read_to_string(sandbox.join("stdout")).unwrap(),
            "kept\n"
        );
        assert!(sandbox.join("big").exists());
        assert_eq!(sandbox.metadata().unwrap().mode() & 0o7777, 0o750);
        // Twice is fine.
        tear_down(&paths).unwrap();
    }

    #[test]
    fn a_failed_set_up_leaves_nothing() {
        if !root_with_loop("a_failed_set_up_leaves_nothing") {
            return;
        }
        let work = tempfile::tempdir().unwrap();
        // A file where the sandbox dir should be: the mount fails after
        // the image was made and attached.
        let sandbox = work.path().join("containers/gone");
        std::fs::create_dir_all(work.path().join("containers")).unwrap();
        std::fs::write(&sandbox, "").unwrap();
        let paths = LoopPaths::new(work.path(), "gone", &sandbox);
        assert!(set_up(&paths, 4 << 20).is_err());
        assert!(!paths.image.exists());
        assert!(loop_device::devices_backed_by(&paths.image).is_empty());
    }

    /// Unmounts whatever a failed test left.
    struct Guard<'a>(&'a LoopPaths);

    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = umount2(&self.0.sandbox, MntFlags::MNT_DETACH);
                release_devices(&self.0.image);
            }
        }
    }
}
