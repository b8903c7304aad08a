//! The crash-safe file write: a temp file in the same directory renamed over
//! the target, so a crash leaves the old content or the new, never half;
//! with [`Durability::Durable`] the file is synced before the rename and the
//! directory after it, so a power loss does too.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A crash of the writer (`kill -9`, a panic): the rename is atomic and
    /// the page cache keeps what was written. Not a power loss.
    CrashSafe,
    /// Also a power loss or kernel crash: the file and then its directory
    /// are synced to disk (two fsyncs).
    Durable,
}

/// A step of [`write_atomic`] failed; the temp file is gone, the target
/// untouched.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct AtomicWriteError {
    /// `create`, `write`, `fsync`, `rename`.
    pub op: &'static str,
    /// The file the step was on (the temp file, or the target for `rename`,
    /// or the directory for its `fsync`).
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that a crash leaves either the old or the new
/// content (see [`Durability`]). The temp file (`.NAME.tmp.PID.SEQ` beside
/// `path`) is unique per call, so concurrent writers of one path do not
/// write into each other's temp file; on any error it is removed.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
) -> Result<(), AtomicWriteError> {
    let dir = parent_of(path);
    write_through(dir, dir, path, bytes, durability)
}

/// [`write_atomic`] with the temp file made in `temp_dir`, a directory of
/// `path`'s filesystem, and renamed from there over `path`. A filesystem
/// places a new file's inode near its directory's: on ext4, in the same
/// block group, whose recently freed inodes a create on a journal-less
/// ext4 walks past one by one (decision 0049). A directory that many
/// writes replace files in (the work dir's `records`) keeps its inodes'
/// churn out of its own group this way (decision 0057). Where the rename
/// between the two is refused (`EXDEV`: another filesystem, or an XFS
/// project boundary) the write is made beside `path` instead.
pub fn write_atomic_in(
    temp_dir: &Path,
    path: &Path,
    bytes: &[u8],
    durability: Durability,
) -> Result<(), AtomicWriteError> {
    let dir = parent_of(path);
    match write_through(temp_dir, dir, path, bytes, durability) {
        Err(e) if e.op == "rename" && e.source.raw_os_error() == Some(libc::EXDEV) => {
            write_through(dir, dir, path, bytes, durability)
        }
        other => other,
    }
}

/// The directory `path` is in.
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        Some(_) => Path::new("."),
        None => Path::new("/"),
    }
}

/// The write: a temp file in `temp_dir`, renamed over `path` (in `dir`).
fn write_through(
    temp_dir: &Path,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    durability: Durability,
) -> Result<(), AtomicWriteError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let temp = temp_dir.join(format!(".{name}.tmp.{}.{seq}", std::process::id()));
    let err = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| AtomicWriteError { op, path, source }
    };
    let written = (|| {
        let mut file = File::create(&temp).map_err(err("create", &temp))?;
        file.write_all(bytes).map_err(err("write", &temp))?;
        if durability == Durability::Durable {
            file.sync_all().map_err(err("fsync", &temp))?;
        }
        drop(file);
        // The file replaced is held open across the rename, so that its last
        // reference goes at our `close`, not inside `rename(2)`: there the
        // kernel frees its blocks (on a `discard` mount, waiting for the
        // device) while it holds the directory's lock, and every other
        // create or rename in the directory waits (decision 0049).
        // `O_PATH`: no access, never blocks (a FIFO), follows no link.
        let replaced = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .ok();
        let renamed = fs::rename(&temp, path).map_err(err("rename", path));
        drop(replaced);
        renamed
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
        return written;
    }
    if durability == Durability::Durable {
        // The directory the name was added to; a temp dir elsewhere only
        // lost a name nobody looks for.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("fsync", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_content_and_leaves_only_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        for durability in [Durability::CrashSafe, Durability::Durable] {
            fs::write(&path, b"old content, longer than the new").unwrap();
            write_atomic(&path, b"new", durability).unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"new");
            assert_eq!(entries(dir.path()), ["record.json"]);
        }
    }

    #[test]
    fn a_fifo_at_the_target_is_replaced_without_blocking() {
        // The file replaced is held open across the rename: a FIFO there
        // (a reader-less open would block) must not stall the write.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        write_atomic(&path, b"new", Durability::Durable).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["record.json"]);
    }

    #[test]
    fn a_failed_rename_leaves_no_temp_file_and_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: rename(2) over it fails
        // after the temp file was written.
        let path = dir.path().join("target");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"kept").unwrap();
        let err = write_atomic(&path, b"new", Durability::Durable).unwrap_err();
        assert_eq!(err.op, "rename");
        assert_eq!(err.path, path);
        assert_eq!(entries(dir.path()), ["target"]);
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"kept");
    }

    #[test]
    fn a_temp_dir_elsewhere_is_left_empty_and_the_target_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (records, temps) = (dir.path().join("records"), dir.path().join("c1"));
        fs::create_dir(&records).unwrap();
        fs::create_dir(&temps).unwrap();
        let path = records.join("c1.json");
        fs::write(&path, b"old").unwrap();
        for durability in [Durability::CrashSafe, Durability::Durable] {
            write_atomic_in(&temps, &path, b"new", durability).unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"new");
            assert_eq!(entries(&records), ["c1.json"]);
            assert!(entries(&temps).is_empty());
        }
        // A failed rename removes the temp file from the temp dir.
        let target = records.join("busy");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"kept").unwrap();
        let err = write_atomic_in(&temps, &target, b"new", Durability::CrashSafe).unwrap_err();
        assert_eq!(err.op, "rename");
        assert!(entries(&temps).is_empty());
    }

    #[test]
    fn a_temp_dir_on_another_filesystem_falls_back_to_beside_the_target() {
        // /dev/shm is a tmpfs on every host berth runs on; the temp dir
        // below is on the test's filesystem only if that is one too.
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            panic!("no /dev/shm to make a temp dir in");
        };
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("record.json");
        write_atomic_in(shm.path(), &path, b"new", Durability::Durable).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["record.json"]);
        assert!(entries(shm.path()).is_empty());
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("record.json");
        let err = write_atomic(&path, b"x", Durability::CrashSafe).unwrap_err();
        assert_eq!(err.op, "create");
        assert!(err.path.starts_with(dir.path().join("absent")));
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(entries(dir.path()).is_empty());
    }
}
