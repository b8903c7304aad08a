//! Measuring a sandbox the way `du -x` does, but stopping as soon as the
//! answer is known.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

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
/// With `stop_above`, the walk ends as soon as the count exceeds it: an
/// over-quota sandbox is known without walking all of it. Entries vanishing
/// under the walk (the container is running) are skipped; only an
/// unreadable `root` is an error.
pub fn measure(
    root: &Path,
    stop_above: Option<u64>,
    cancel: &AtomicBool,
) -> Result<Measured, DiskError> {
    let top = root
        .symlink_metadata()
        .map_err(|e| DiskError::io("stat", root, e))?;
    let dev = top.dev();
    let mut bytes = allocated(&top);
    let over = |bytes: u64| stop_above.is_some_and(|limit| bytes > limit);
    let stopped = |bytes, stop| {
        Ok(Measured {
            bytes,
            stopped: Some(stop),
        })
    };
    if over(bytes) {
        return stopped(bytes, Stop::OverLimit);
    }
    if !top.is_dir() {
        return Ok(Measured {
            bytes,
            stopped: None,
        });
    }
    // Only inodes with more than one link can be met twice: the set stays
    // small on ordinary trees.
    let mut linked: HashSet<(u64, u64)> = HashSet::new();
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut until_cancel_check = CANCEL_CHECK_EVERY;
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => return Err(DiskError::io("read", root, e)),
            Err(e) => {
                skip(&dir, &e);
                continue;
            }
        };
        for entry in entries {
            until_cancel_check -= 1;
            if until_cancel_check == 0 {
                if cancel.load(Ordering::Relaxed) {
                    return stopped(bytes, Stop::Cancelled);
                }
                until_cancel_check = CANCEL_CHECK_EVERY;
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    skip(&dir, &e);
                    continue;
                }
            };
            // DirEntry::metadata is an fstatat(AT_SYMLINK_NOFOLLOW) on the
            // directory's fd: an lstat without resolving the path again.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    skip(&entry.path(), &e);
                    continue;
                }
            };
            if meta.dev() != dev {
                // A mount point: what is mounted there is not the sandbox's.
                continue;
            }
            if !meta.is_dir() && meta.nlink() > 1 && !linked.insert((meta.dev(), meta.ino())) {
                continue;
            }
            bytes = bytes.saturating_add(allocated(&meta));
            if over(bytes) {
                return stopped(bytes, Stop::OverLimit);
            }
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(Measured {
        bytes,
        stopped: None,
    })
}

fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.blocks().saturating_mul(512)
}

fn skip(path: &Path, e: &io::Error) {
    if e.kind() != io::ErrorKind::NotFound {
        tracing::debug!(path = %path.display(), error = %e, "disk: not counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

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
