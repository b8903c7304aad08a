//! Removing a tree a container made: relative to directory descriptors, so
//! no symlink is followed and no path is resolved again; never into another
//! mount; with one descriptor for the walk, two for a moment while a
//! directory is removed (going back up through `..`, checked against the
//! inode it came from), so depth costs no descriptors and no path length
//! limit applies.

use std::ffi::OsStr;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::dir::{Dir, Kind};
use crate::error::ConfinedError;
use crate::Result;

/// Removes `path` (a directory tree or a single entry) whose parent the
/// host controls (e.g. `<work_dir>/containers/<id>`). A missing `path` is
/// fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ConfinedError::Escapes { path: path.into() });
    };
    let parent = match Dir::open(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    }) {
        Ok(dir) => dir,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_tree_at(&parent, name)
}

/// A directory being emptied: who it is, its name in its parent, and the
/// subdirectories still to empty.
struct Level {
    dev: u64,
    ino: u64,
    name: OsString,
    pending: Vec<OsString>,
}

/// How often a tree is emptied again when something appeared in it while it
/// was being removed (a process still writing its last file).
const ATTEMPTS: usize = 3;

pub(crate) fn remove_tree_at(parent: &Dir, name: &OsStr) -> Result<()> {
    let mut attempt = 1;
    loop {
        match remove_once(parent, name) {
            Err(ConfinedError::Io { source, .. })
                if attempt < ATTEMPTS
                    && matches!(
                        source.raw_os_error(),
                        Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
                    ) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn remove_once(parent: &Dir, name: &OsStr) -> Result<()> {
    let top = match parent.stat(name) {
        Ok(stat) => stat,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    if top.kind() != Kind::Dir {
        return ignore_missing(parent.remove_file(name));
    }
    let root_dev = parent.stat_self()?.dev();
    if top.dev() != root_dev {
        return Err(ConfinedError::CrossesMount {
            path: parent.path().join(name),
        });
    }
    let mut current = parent.open_child_same_mount(name)?;
    let mut levels = vec![enter(&current, name, root_dev)?];
    loop {
        let level = levels
            .last_mut()
            .expect("the top level stays until the end");
        if let Some(child) = level.pending.pop() {
            // Empty already (or emptied meanwhile): gone in one call.
            match current.remove_dir(&child) {
                Ok(()) => continue,
                Err(e) if e.is_not_found() => continue,
                Err(ConfinedError::Io { source, .. })
                    if matches!(
                        source.raw_os_error(),
                        Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
                    ) => {}
                Err(ConfinedError::Io { source, path, .. })
                    if source.raw_os_error() == Some(libc::EBUSY) =>
                {
                    // A mount point: what is mounted there is not ours.
                    return Err(ConfinedError::CrossesMount { path });
                }
                Err(ConfinedError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    // Replaced by a file since listed.
                    ignore_missing(current.remove_file(&child))?;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let next = current.open_child_same_mount(&child)?;
            let entered = enter(&next, &child, root_dev)?;
            current = next;
            levels.push(entered);
            continue;
        }
        // Everything below `current` is gone: back up, checking that `..` is
        // the directory we came down from.
        let done = levels.pop().expect("checked above");
        let Some(up_level) = levels.last() else {
            break;
        };
        let up = current.open_parent(parent_path(&current))?;
        let up_stat = up.stat_self()?;
        if (up_stat.dev(), up_stat.ino()) != (up_level.dev, up_level.ino) {
            return Err(ConfinedError::Moved {
                path: current.path().to_path_buf(),
            });
        }
        // The emptied dir's own handle stays open across its removal (see
        // the top's, below).
        let _emptied = std::mem::replace(&mut current, up);
        match current.remove_dir(&done.name) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            // Something appeared in it since: empty it again.
            Err(ConfinedError::Io { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
                ) =>
            {
                levels
                    .last_mut()
                    .expect("checked above")
                    .pending
                    .push(done.name)
            }
            Err(e) => return Err(e),
        }
    }
    // `current` is the top's own handle, held across its removal: the last
    // reference to the directory goes at our `close`, not inside
    // `rmdir(2)`, where the kernel frees its blocks (on a `discard` mount,
    // waiting for the device) while it holds the parent's lock, which every
    // other create and remove in the parent waits for (decision 0049).
    let removed = ignore_missing(parent.remove_dir(name));
    drop(current);
    removed
}

/// Removes every non-directory in `dir` and returns the level with its
/// subdirectories to visit.
fn enter(dir: &Dir, name: &OsStr, root_dev: u64) -> Result<Level> {
    let stat = dir.stat_self()?;
    if stat.dev() != root_dev {
        return Err(ConfinedError::CrossesMount {
            path: dir.path().to_path_buf(),
        });
    }
    let mut pending = Vec::new();
    for entry in dir.names()? {
        let kind = match dir.stat(&entry) {
            Ok(stat) => stat.kind(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        if kind == Kind::Dir {
            pending.push(entry);
        } else {
            ignore_missing(dir.remove_file(&entry))?;
        }
    }
    Ok(Level {
        dev: stat.dev(),
        ino: stat.ino(),
        name: name.to_os_string(),
        pending,
    })
}

fn parent_path(dir: &Dir) -> PathBuf {
    dir.path()
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn ignore_missing(result: Result<()>) -> Result<()> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}
