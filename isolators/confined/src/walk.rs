//! Walking a tree a container may still be changing: depth first, through
//! directory descriptors, never following a symlink, never entering another
//! mount, with one descriptor open whatever the depth (going back up through
//! `..`, checked against the inode it came from).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::dir::{Dir, Entry, Kind};
use crate::error::ConfinedError;
use crate::Result;

/// What the walk does after an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Go on; for a directory, visit its entries too.
    Descend,
    /// Go on, but not into this directory.
    Skip,
    /// End the walk now.
    Stop,
}

/// A directory whose entries are still to be entered.
struct Level {
    dev: u64,
    ino: u64,
    /// Relative to the walk's root.
    relative: PathBuf,
    pending: Vec<OsString>,
}

impl Dir {
    /// Calls `visit(dir, relative, entry)` for every entry below this
    /// directory: `dir` is the entry's directory (open, for `*at` calls),
    /// `relative` its path from this one. Directories are entered when
    /// `visit` says [`Step::Descend`], unless they are symlinks (never) or
    /// on another mount (never). Entries vanishing meanwhile are left out.
    /// Returns `false` when `visit` stopped the walk.
    pub fn walk(&self, mut visit: impl FnMut(&Dir, &Path, &Entry) -> Result<Step>) -> Result<bool> {
        let mut current = self.try_clone()?;
        let top = current.stat_self()?;
        let Some(pending) = visit_all(&current, Path::new(""), &mut visit)? else {
            return Ok(false);
        };
        let mut levels = vec![Level {
            dev: top.dev(),
            ino: top.ino(),
            relative: PathBuf::new(),
            pending,
        }];
        loop {
            let level = levels
                .last_mut()
                .expect("the top level stays until the end");
            if let Some(name) = level.pending.pop() {
                let child = match current.open_child_same_mount(&name) {
                    Ok(child) => child,
                    // Gone, replaced by a symlink or a file, or a mount.
                    Err(e) if e.is_not_found() => continue,
                    Err(ConfinedError::CrossesMount { .. })
                    | Err(ConfinedError::NotADirectory { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let stat = child.stat_self()?;
                let relative = level.relative.join(&name);
                current = child;
                let Some(pending) = visit_all(&current, &relative, &mut visit)? else {
                    return Ok(false);
                };
                levels.push(Level {
                    dev: stat.dev(),
                    ino: stat.ino(),
                    relative,
                    pending,
                });
                continue;
            }
            levels.pop();
            let Some(up) = levels.last() else {
                break;
            };
            let parent = current.open_parent(self.path().join(&up.relative))?;
            let stat = parent.stat_self()?;
            if (stat.dev(), stat.ino()) != (up.dev, up.ino) {
                return Err(ConfinedError::Moved {
                    path: current.path().to_path_buf(),
                });
            }
            current = parent;
        }
        Ok(true)
    }
}

/// Visits the entries of `dir`; returns the directories to enter, or
/// `None` when the visitor stopped.
fn visit_all(
    dir: &Dir,
    relative: &Path,
    visit: &mut impl FnMut(&Dir, &Path, &Entry) -> Result<Step>,
) -> Result<Option<Vec<OsString>>> {
    let mut pending = Vec::new();
    for entry in dir.entries()? {
        match visit(dir, relative, &entry)? {
            Step::Stop => return Ok(None),
            Step::Descend if entry.stat.kind() == Kind::Dir => pending.push(entry.name),
            Step::Descend | Step::Skip => {}
        }
    }
    Ok(Some(pending))
}
