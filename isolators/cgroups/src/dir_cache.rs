//! Opening control files relative to their cgroup directory: inside
//! [`with_dir_cache`], the first read in a directory opens it (`O_PATH`)
//! and every read in it opens the file with `openat` on that descriptor, so
//! the kernel walks the long cgroupfs path once per directory instead of
//! once per file. The descriptors are this thread's and closed when the
//! scope ends: nothing is held between scopes (a container's cgroup stays
//! removable, and no descriptor count grows with the containers).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

thread_local! {
    static DIRS: RefCell<Option<HashMap<PathBuf, OwnedFd>>> = const { RefCell::new(None) };
}

/// Runs `f` with control-file reads on this thread opened relative to
/// directory descriptors kept until `f` returns (a scope inside another
/// shares the outer one's).
pub fn with_dir_cache<T>(f: impl FnOnce() -> T) -> T {
    struct Scope(bool);
    impl Drop for Scope {
        fn drop(&mut self) {
            if self.0 {
                DIRS.with(|d| *d.borrow_mut() = None);
            }
        }
    }
    let opened = DIRS.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_some() {
            return false;
        }
        *d = Some(HashMap::new());
        true
    });
    let _scope = Scope(opened);
    f()
}

/// Opens `path` for reading: through the scope's descriptor of its
/// directory inside [`with_dir_cache`], by its whole path otherwise (or
/// when the directory cannot be opened: the plain open reports the error).
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    let cached = DIRS.with(|d| {
        let mut d = d.borrow_mut();
        let dirs = d.as_mut()?;
        let (dir, name) = (path.parent()?, path.file_name()?);
        if !dirs.contains_key(dir) {
            let fd = open(
                dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            dirs.insert(dir.to_path_buf(), fd);
        }
        let fd = dirs.get(dir)?;
        Some(openat(
            fd,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ))
    });
    match cached {
        Some(Ok(fd)) => Ok(File::from(fd)),
        Some(Err(errno)) => Err(io::Error::from(errno)),
        None => File::open(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read(path: &Path) -> String {
        let mut text = String::new();
        open_read(path).unwrap().read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn reads_the_same_inside_and_outside_a_scope_and_closes_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::write(dir.path().join("b"), "2").unwrap();
        assert_eq!(read(&dir.path().join("a")), "1");
        with_dir_cache(|| {
            assert_eq!(read(&dir.path().join("a")), "1");
            assert_eq!(read(&dir.path().join("b")), "2");
            with_dir_cache(|| assert_eq!(read(&dir.path().join("b")), "2"));
            // The inner scope left the outer one's descriptors.
            DIRS.with(|d| assert_eq!(d.borrow().as_ref().unwrap().len(), 1));
            let err = open_read(&dir.path().join("missing")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        });
        DIRS.with(|d| assert!(d.borrow().is_none()));
    }
}
