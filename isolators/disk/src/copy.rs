//! Copying a sandbox out of its loop filesystem, keeping what a person
//! inspecting it cares about: contents, modes, owners, times, symlinks,
//! hard links, fifos and device nodes (not extended attributes).
//!
//! The source is the container's: it is walked through `berth_confined`
//! (directory descriptors, no symlink followed, only regular files opened,
//! never blocking on a FIFO, reads bounded by the size at open). The
//! destination is the agent's own staging dir.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use berth_confined::{Dir, Entry, Kind, Stat, Step};
use nix::sys::stat::{mknod, Mode, SFlag};

use crate::error::DiskError;

/// Copies the tree at `from` to `to`, which must not exist. Iterative, so a
/// deep tree made by the container cannot exhaust the stack.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), DiskError> {
    let confined = |op| move |e: berth_confined::ConfinedError| DiskError::io(op, from, e.into());
    let src = Dir::open(from).map_err(confined("open"))?;
    let top = src.stat_self().map_err(confined("stat"))?;
    fs::create_dir(to).map_err(|e| DiskError::io("create", to, e))?;
    // Directories get their owner, mode and times after their contents,
    // deepest first: writing into them would change the times, and a
    // read-only mode would stop the copy.
    let mut finish: Vec<(PathBuf, Stat)> = vec![(to.to_path_buf(), top)];
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut failed = None;
    src.walk(|dir, relative, entry| {
        let dst = to.join(relative).join(&entry.name);
        match copy_entry(dir, entry, &dst, &mut linked, &mut finish) {
            Ok(step) => Ok(step),
            Err(e) => {
                failed = Some(e);
                Ok(Step::Stop)
            }
        }
    })
    .map_err(confined("walk"))?;
    if let Some(e) = failed {
        return Err(e);
    }
    for (dir, meta) in finish.iter().rev() {
        owner(dir, meta)?;
        mode(dir, meta)?;
        let file = File::open(dir).map_err(|e| DiskError::io("open", dir, e))?;
        times(&file, dir, meta)?;
    }
    Ok(())
}

/// Copies one entry; a directory is made here and filled as the walk
/// descends into it.
fn copy_entry(
    dir: &Dir,
    entry: &Entry,
    dst: &Path,
    linked: &mut HashMap<(u64, u64), PathBuf>,
    finish: &mut Vec<(PathBuf, Stat)>,
) -> Result<Step, DiskError> {
    let meta = entry.stat;
    let kind = meta.kind();
    if kind == Kind::Dir {
        fs::create_dir(dst).map_err(|e| DiskError::io("create", dst, e))?;
        finish.push((dst.to_path_buf(), meta));
        return Ok(Step::Descend);
    }
    if meta.nlink() > 1 {
        if let Some(first) = linked.get(&(meta.dev(), meta.ino())) {
            fs::hard_link(first, dst).map_err(|e| DiskError::io("link", dst, e))?;
            return Ok(Step::Skip);
        }
        linked.insert((meta.dev(), meta.ino()), dst.to_path_buf());
    }
    let src = |e: berth_confined::ConfinedError| DiskError::io("copy", dst, e.into());
    match kind {
        Kind::Symlink => {
            let target = dir.read_link(&entry.name).map_err(src)?;
            std::os::unix::fs::symlink(&target, dst)
                .map_err(|e| DiskError::io("symlink", dst, e))?;
            owner(dst, &meta)?;
        }
        Kind::File => copy_file(dir, entry, dst)?,
        _ => special(dst, &meta)?,
    }
    Ok(Step::Skip)
}

fn copy_file(dir: &Dir, entry: &Entry, dst: &Path) -> Result<(), DiskError> {
    let meta = &entry.stat;
    let mut input = dir
        .open_file(&entry.name)
        .map_err(|e| DiskError::io("open", dst, e.into()))?;
    let mut output = File::create_new(dst).map_err(|e| DiskError::io("create", dst, e))?;
    std::io::copy(&mut input, &mut output).map_err(|e| DiskError::io("copy", dst, e))?;
    times(&output, dst, meta)?;
    // chown clears set-id bits: the mode goes last.
    owner(dst, meta)?;
    mode(dst, meta)
}

fn special(dst: &Path, meta: &Stat) -> Result<(), DiskError> {
    let flag = match meta.mode() & libc::S_IFMT {
        libc::S_IFIFO => SFlag::S_IFIFO,
        libc::S_IFCHR => SFlag::S_IFCHR,
        libc::S_IFBLK => SFlag::S_IFBLK,
        _ => SFlag::S_IFSOCK,
    };
    let perm = Mode::from_bits_truncate((meta.mode() & 0o7777) as _);
    mknod(dst, flag, perm, meta.rdev() as _).map_err(|e| DiskError::io("mknod", dst, e.into()))?;
    owner(dst, meta)?;
    mode(dst, meta)
}

fn owner(path: &Path, meta: &Stat) -> Result<(), DiskError> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| DiskError::io("chown", path, e))
}

fn mode(path: &Path, meta: &Stat) -> Result<(), DiskError> {
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| DiskError::io("chmod", path, e))
}

fn times(file: &File, path: &Path, meta: &Stat) -> Result<(), DiskError> {
    let at = |secs: i64, nanos: i64| {
        let since = Duration::new(secs.unsigned_abs(), nanos as u32);
        if secs >= 0 {
            UNIX_EPOCH + since
        } else {
            UNIX_EPOCH - since
        }
    };
    let (atime, atime_nsec) = meta.atime();
    let (mtime, mtime_nsec) = meta.mtime();
    let times = FileTimes::new()
        .set_accessed(at(atime, atime_nsec))
        .set_modified(at(mtime, mtime_nsec));
    file.set_times(times)
        .map_err(|e| DiskError::io("set times of", path, e))
}

/// Moves every entry of `from` into `to` (same filesystem: renames), then
/// removes `from`.
pub fn move_entries(from: &Path, to: &Path) -> Result<(), DiskError> {
    let entries = fs::read_dir(from).map_err(|e| DiskError::io("read", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DiskError::io("read", from, e))?;
        let dst = to.join(entry.file_name());
        fs::rename(entry.path(), &dst).map_err(|e| DiskError::io("rename", &dst, e))?;
    }
    fs::remove_dir(from).map_err(|e| DiskError::io("remove", from, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Metadata;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::time::SystemTime;

    fn mtime(meta: &Metadata) -> SystemTime {
        meta.modified().unwrap()
    }

    #[test]
    fn copies_contents_links_modes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub/deeper")).unwrap();
        fs::write(src.join("stdout"), "hello\n").unwrap();
        fs::write(src.join("sub/deeper/data"), vec![3u8; 100_000]).unwrap();
        fs::set_permissions(src.join("stdout"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::hard_link(src.join("stdout"), src.join("sub/again")).unwrap();
        std::os::unix::fs::symlink("../stdout", src.join("sub/link")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", src.join("dangling")).unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o500)).unwrap();
        let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(src.join("sub/deeper/data"))
            .unwrap()
            .set_modified(old)
            .unwrap();

        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();

        assert_eq!(fs::read_to_string(dst.join("stdout")).unwrap(), "hello\n");
        assert_eq!(
            fs::read(dst.join("sub/deeper/data")).unwrap().len(),
            100_000
        );
        let meta = |p: &str| dst.join(p).symlink_metadata().unwrap();
        assert_eq!(meta("stdout").mode() & 0o7777, 0o640);
        assert_eq!(meta("sub").mode() & 0o7777, 0o500);
        assert_eq!(meta("stdout").ino(), meta("sub/again").ino());
        assert_eq!(
            fs::read_link(dst.join("sub/link")).unwrap(),
            Path::new("../stdout")
        );
        assert!(meta("dangling").file_type().is_symlink());
        assert_eq!(mtime(&meta("sub/deeper/data")), old);
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dst.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn links_out_are_copied_as_links_and_never_followed() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("secret"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        std::os::unix::fs::symlink(host.path(), src.join("dir-out")).unwrap();
        std::os::unix::fs::symlink(host.path().join("secret"), src.join("file-out")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", src.join("zero")).unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        for name in ["dir-out", "file-out", "zero"] {
            assert!(dst
                .join(name)
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink());
        }
        assert_eq!(fs::read_dir(host.path()).unwrap().count(), 1);
    }

    #[test]
    fn fifos_are_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        nix::unistd::mkfifo(&src.join("pipe"), Mode::from_bits_truncate(0o600)).unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert!(dst
            .join("pipe")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_fifo());
    }

    #[test]
    fn entries_move_and_the_staging_dir_goes() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let sandbox = dir.path().join("sandbox");
        fs::create_dir_all(staging.join("d")).unwrap();
        fs::write(staging.join("f"), "x").unwrap();
        fs::create_dir(&sandbox).unwrap();
        move_entries(&staging, &sandbox).unwrap();
        assert!(sandbox.join("d").is_dir());
        assert_eq!(fs::read_to_string(sandbox.join("f")).unwrap(), "x");
        assert!(!staging.exists());
    }
}
