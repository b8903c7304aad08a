//! The loop backend's filesystem image: how big, and how it is made.
//!
//! Depends on `mkfs.ext4` from e2fsprogs on the agent host.
//!
//! # Sizing
//!
//! The container may keep `quota` bytes, so the filesystem's own metadata
//! (journal, inode tables, bitmaps, superblock copies) must come on top:
//! the image is bigger than the quota. ext4's `statfs` leaves that overhead
//! out of the filesystem's size (`f_blocks`), and `df`'s "used" is
//! `f_blocks - f_bfree`, so as long as `f_blocks * f_bsize <= quota` the
//! usage shown can never pass the quota. The overhead depends on mke2fs's
//! choices, so rather than model them exactly the image is made with a
//! first guess ([`first_guess`]), measured once mounted, and made again with
//! the size corrected ([`next_size`]) until the usable size is at most the
//! quota and at most [`tolerance`] below it (at most [`MAX_ATTEMPTS`] tries;
//! one or two in practice). `-m 0` reserves nothing for root, so all of the
//! usable size is the container's.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::DiskError;

/// The filesystem block size, fixed so the overhead does not change shape
/// with the size (mke2fs would pick 1 KiB blocks below 512 MiB).
pub const BLOCK: u64 = 4096;
/// How many images [`next_size`] may ask for before giving up.
pub const MAX_ATTEMPTS: usize = 5;

/// The journal mke2fs makes for a filesystem of `size` bytes with 4 KiB
/// blocks (`ext2fs_default_journal_size`).
pub fn journal_bytes(size: u64) -> u64 {
    let blocks = size / BLOCK;
    let journal_blocks = match blocks {
        b if b < 2048 => 0,
        b if b < 32768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    };
    journal_blocks * BLOCK
}

/// The first image size tried for `quota`: the quota, the journal, the
/// inode tables (256 bytes per 16 KiB, 1/64) and 1 MiB for the rest.
pub fn first_guess(quota: u64) -> u64 {
    round_down(quota + journal_bytes(quota) + quota / 64 + (1 << 20))
}

/// How far below the quota the usable size may stay: 1%, at least 256 KiB
/// (block groups make the overhead move in steps).
pub fn tolerance(quota: u64) -> u64 {
    (quota / 100).max(256 << 10)
}

/// The next image size to try after an image of `size` bytes gave `usable`
/// bytes, or `None` when it is good: `usable <= quota` and within
/// [`tolerance`] of it.
pub fn next_size(size: u64, quota: u64, usable: u64) -> Option<u64> {
    if usable > quota {
        // Shrink by the excess and one block more: less image, no more
        // overhead, so this lands under the quota.
        return Some(round_down(size.saturating_sub(usable - quota + BLOCK)));
    }
    let missing = quota - usable;
    if missing <= tolerance(quota) {
        return None;
    }
    Some(round_down(size + missing))
}

fn round_down(bytes: u64) -> u64 {
    bytes / BLOCK * BLOCK
}

/// Creates `image` as a sparse file of `size` bytes (replacing an old one:
/// a fresh inode, so no loop device of an earlier try can refer to it).
pub fn create(image: &Path, size: u64) -> Result<(), DiskError> {
    match std::fs::remove_file(image) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DiskError::io("remove", image, e)),
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(image)
        .map_err(|e| DiskError::io("create", image, e))?;
    file.set_len(size)
        .map_err(|e| DiskError::io("truncate", image, e))
}

/// The mkfs.ext4 arguments for `image`.
pub fn mkfs_args(image: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "-q",
        "-F", // quiet; a regular file is fine
        "-m",
        "0", // nothing reserved for root: the quota is the container's
        "-b",
        "4096", // see BLOCK
        "-E",
        "nodiscard", // the file is sparse already
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(image.into());
    args
}

/// Makes an ext4 filesystem in `image` (`mkfs.ext4 -q -F -m 0 ...`).
pub fn mkfs(image: &Path) -> Result<(), DiskError> {
    let failed = |message: String| DiskError::Command {
        program: "mkfs.ext4",
        path: image.to_path_buf(),
        message,
    };
    let output = Command::new("mkfs.ext4")
        .args(mkfs_args(image))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("cannot run (is e2fsprogs installed?): {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(failed(format!(
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_follows_mke2fs() {
        assert_eq!(journal_bytes(2 << 20), 0);
        assert_eq!(journal_bytes(20 << 20), 4 << 20);
        assert_eq!(journal_bytes(1 << 30), 32 << 20);
        assert_eq!(journal_bytes(1 << 40), 1 << 30);
    }

    #[test]
    fn first_guess_is_above_the_quota_and_block_aligned() {
        for quota in [1 << 20, 20 << 20, 1 << 30, 1 << 40] {
            let size = first_guess(quota);
            assert!(size > quota, "{quota}");
            assert_eq!(size % BLOCK, 0);
        }
    }

    #[test]
    fn next_size_converges_from_both_sides() {
        let quota = 20 << 20;
        // Over the quota: shrink by the excess and a block.
        assert_eq!(
            next_size(26 << 20, quota, quota + 10_000),
            Some(round_down((26 << 20) - 10_000 - BLOCK))
        );
        // Far under: grow by what is missing.
        assert_eq!(
            next_size(22 << 20, quota, quota - (2 << 20)),
            Some(24 << 20)
        );
        // Just under: good.
        assert_eq!(next_size(24 << 20, quota, quota - 4096), None);
        assert_eq!(next_size(24 << 20, quota, quota), None);
    }

    #[test]
    fn a_model_filesystem_converges_within_the_attempts() {
        // A model with stepwise overhead, as block groups give.
        let overhead = |size: u64| journal_bytes(size) + (size / (128 << 20) + 1) * (2 << 20);
        for quota in [1 << 20, 5 << 20, 20 << 20, 300 << 20, 10 << 30] {
            let mut size = first_guess(quota);
            let mut tries = 1;
            loop {
                let usable = size.saturating_sub(overhead(size));
                match next_size(size, quota, usable) {
                    None => break,
                    Some(next) => size = next,
                }
                tries += 1;
                assert!(tries <= MAX_ATTEMPTS, "quota {quota}: no convergence");
            }
        }
    }

    #[test]
    fn mkfs_is_asked_for_no_reserved_blocks() {
        let args = mkfs_args(Path::new("/w/disk-images/a.img"));
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args[..4], ["-q", "-F", "-m", "0"]);
        assert_eq!(args.last(), Some(&"/w/disk-images/a.img"));
    }
}
