//! Measuring a sandbox the way `du -x` does, but stopping as soon as the
//! answer is known.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_confined::{Dir, Kind, Step};

use crate::error::DiskError;

/// How often (in entries) a walk looks at its cancel flag.
const CANCEL_CHECK_EVERY: u32 = 256;

/// What a walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// Bytes allocated (`st_blocks * 512`) by what was walked.
    pub bytes: u64,
    /// Why the walk ended before seeing everything, if it did: then `bytes`
    /// is a lower bound.
    pub stopped: Option<Stop>,
}

/// Why a walk stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The count went over the limit it was given.
    OverLimit,
    /// The cancel flag was set.
    Cancelled,
}

/// Counts the bytes allocated under `root`, as `du -sx` would: `lstat`
/// blocks (sparse files count what they hold), each hard-linked inode once
/// by `(dev, ino)`, no symlink followed, no other filesystem entered.
///
/// The walk goes through `berth_confined` (directory descriptors, `*at`
/// calls, nothing opened but directories, no symlink followed), so a
/// container changing its sandbox under the walk can neither lead it out
/// nor make it block.
///
/// With `stop_above`, the walk ends as soon as the count exceeds it: an
/// over-quota sandbox is known without walking all of it. Entries vanishing
/// under the walk (the container is running) are skipped; only an
/// unreadable `root` is an error.
pub fn measure(
    root: &Path,
    stop_above: Option<u64>,
    cancel: &AtomicBool,
) -> Result<Measured, DiskError> {
    let dir = Dir::open(root).map_err(|e| DiskError::io("open", root, e.into()))?;
    let top = dir
        .stat_self()
        .map_err(|e| DiskError::io("stat", root, e.into()))?;
    let dev = top.dev();
    let mut bytes = top.allocated();
    let over = |bytes: u64| stop_above.is_some_and(|limit| bytes > limit);
    if over(bytes) {
        return Ok(Measured {
            bytes,
            stopped: Some(Stop::OverLimit),
        });
    }
    // Only inodes with more than one link can be met twice: the set stays
    // small on ordinary trees.
    let mut linked: HashSet<(u64, u64)> = HashSet::new();
    let mut until_cancel_check = CANCEL_CHECK_EVERY;
    let mut stopped = None;
    let walked = dir.walk(|_, _, entry| {
        until_cancel_check -= 1;
        if until_cancel_check == 0 {
            if cancel.load(Ordering::Relaxed) {
                stopped = Some(Stop::Cancelled);
                return Ok(Step::Stop);
            }
            until_cancel_check = CANCEL_CHECK_EVERY;
        }
        let stat = &entry.stat;
        if stat.dev() != dev {
            // A mount point: what is mounted there is not the sandbox's.
            return Ok(Step::Skip);
        }
        let is_dir = stat.kind() == Kind::Dir;
        if !is_dir && stat.nlink() > 1 && !linked.insert((stat.dev(), stat.ino())) {
            return Ok(Step::Skip);
        }
        bytes = bytes.saturating_add(stat.allocated());
        if over(bytes) {
            stopped = Some(Stop::OverLimit);
            return Ok(Step::Stop);
        }
        Ok(Step::Descend)
    });
    match walked {
        Ok(_) => {}
        // Moved under the walk by the running container: what was counted
        // is a lower bound.
        Err(e) => {
            tracing::debug!(path = %root.display(), error = %e, "disk: walk cut short");
        }
    }
    Ok(Measured { bytes, stopped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    static NO_CANCEL: AtomicBool = AtomicBool::new(false);

    fn write(path: &Path, len: usize) {
        let mut file = fs::File::create(path).unwrap();
        file.write_all(&vec![7u8; len]).unwrap();
        file.sync_all().unwrap();
    }

    fn du(path: &Path) -> u64 {
        measure(path, None, &NO_CANCEL).unwrap().bytes
    }

    fn blocks(path: &Path) -> u64 {
        path.symlink_metadata().unwrap().blocks() * 512
    }

    #[test]
    fn counts_allocated_blocks_of_everything_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        write(&root.join("a"), 100_000);
        write(&root.join("sub/b"), 50_000);
        let expected = blocks(root)
            + blocks(&root.join("sub"))
            + blocks(&root.join("a"))
            + blocks(&root.join("sub/b"));
        assert_eq!(du(root), expected);
        assert!(du(root) >= 150_000);
    }

    #[test]
    fn hard_links_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("a"), 200_000);
        let before = du(root);
        fs::hard_link(root.join("a"), root.join("b")).unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::hard_link(root.join("a"), root.join("sub/c")).unwrap();
        assert_eq!(du(root), before + blocks(&root.join("sub")));
    }

    #[test]
    fn symlinks_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("big"), 500_000);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let before = du(root);
        std::os::unix::fs::symlink(outside.path(), root.join("to-dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("big"), root.join("to-file")).unwrap();
        let after = du(root);
        assert!(after - before < 100_000, "{before} -> {after}");
        assert_eq!(
            after - before,
            blocks(&root.join("to-dir")) + blocks(&root.join("to-file"))
        );
    }

    #[test]
    fn stops_as_soon_as_the_limit_is_exceeded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for i in 0..20 {
            write(&root.join(format!("f{i}")), 64 << 10);
        }
        let full = du(root);
        let early = measure(root, Some(100 << 10), &NO_CANCEL).unwrap();
        assert_eq!(early.stopped, Some(Stop::OverLimit));
        assert!(early.bytes > 100 << 10);
        // Stopped after the entry that crossed the limit, not at the end.
        assert!(early.bytes < full, "{} of {full}", early.bytes);
        let under = measure(root, Some(full), &NO_CANCEL).unwrap();
        assert_eq!(
            under,
            Measured {
                bytes: full,
                stopped: None
            }
        );
    }

    #[test]
    fn a_set_cancel_flag_ends_a_long_walk() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..(CANCEL_CHECK_EVERY * 2) {
            fs::File::create(dir.path().join(format!("f{i}"))).unwrap();
        }
        let cancel = AtomicBool::new(true);
        let walk = measure(dir.path(), None, &cancel).unwrap();
        assert_eq!(walk.stopped, Some(Stop::Cancelled));
    }

    #[test]
    fn an_unreadable_root_is_an_error_naming_it() {
        let err = measure(Path::new("/nonexistent/sandbox"), None, &NO_CANCEL).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sandbox"), "{err}");
    }

    #[test]
    fn other_filesystems_are_not_entered() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            berth_cgroups::testing::skip(
                "du::other_filesystems_are_not_entered",
                "needs root to mount a tmpfs",
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mnt = root.join("mnt");
        fs::create_dir(&mnt).unwrap();
        let before = du(root);
        nix::mount::mount(
            Some("tmpfs"),
            &mnt,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=4m"),
        )
        .unwrap();
        write(&mnt.join("big"), 1 << 20);
        let with_mount = du(root);
        nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();
        // The mount point dir itself belongs to the tmpfs: nothing of it counts.
        assert_eq!(with_mount, before - blocks(&mnt));
    }
}
