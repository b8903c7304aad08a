//! A directory opened once, and every operation on names beneath it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::ConfinedError;
use crate::file::ReadFile;
use crate::open::{c_string, open_beneath, OpenError};
use crate::Result;

/// A directory that may hold hostile content, opened by descriptor. Paths
/// given to its methods are relative to it and resolved beneath it without
/// following any symlink.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// For messages only; never opened again.
    path: PathBuf,
}

/// What an entry is, as its `lstat` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, a socket or a device node.
    Other,
}

/// An entry's `lstat`.
#[derive(Debug, Clone, Copy)]
pub struct Stat(libc::stat);

impl Stat {
    pub fn kind(&self) -> Kind {
        match self.0.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
    /// All of `st_mode`, type bits included.
    pub fn mode(&self) -> u32 {
        self.0.st_mode
    }
    pub fn size(&self) -> u64 {
        self.0.st_size as u64
    }
    /// Bytes allocated: `st_blocks * 512`.
    pub fn allocated(&self) -> u64 {
        (self.0.st_blocks as u64).saturating_mul(512)
    }
    pub fn dev(&self) -> u64 {
        self.0.st_dev
    }
    pub fn ino(&self) -> u64 {
        self.0.st_ino
    }
    pub fn nlink(&self) -> u64 {
        self.0.st_nlink
    }
    pub fn uid(&self) -> u32 {
        self.0.st_uid
    }
    pub fn gid(&self) -> u32 {
        self.0.st_gid
    }
    pub fn rdev(&self) -> u64 {
        self.0.st_rdev
    }
    /// Modification time: seconds and nanoseconds since the epoch.
    pub fn mtime(&self) -> (i64, i64) {
        (self.0.st_mtime, self.0.st_mtime_nsec)
    }
    /// Access time: seconds and nanoseconds since the epoch.
    pub fn atime(&self) -> (i64, i64) {
        (self.0.st_atime, self.0.st_atime_nsec)
    }
}

/// A directory entry, with its `lstat` taken relative to the directory.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: OsString,
    pub stat: Stat,
}

impl Dir {
    /// Opens the directory at `path`, whose ancestors the host controls
    /// (e.g. `<work_dir>/containers/<id>/sandbox`): its last component must
    /// be a directory, not a symlink.
    pub fn open(path: &Path) -> Result<Dir> {
        let c_path = c_string(path).map_err(|e| open_error(e, path))?;
        // SAFETY: the path is NUL-terminated; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDONLY
                    | libc::O_DIRECTORY
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC
                    | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) => ConfinedError::Escapes { path: path.into() },
                // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR too.
                Some(libc::ENOTDIR)
                    if path
                        .symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink()) =>
                {
                    ConfinedError::Escapes { path: path.into() }
                }
                Some(libc::ENOTDIR) => ConfinedError::NotADirectory { path: path.into() },
                _ => ConfinedError::io("open", path, e),
            });
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path the directory was opened as, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another descriptor of the same directory.
    pub fn try_clone(&self) -> Result<Dir> {
        Ok(Dir {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| ConfinedError::io("dup", &self.path, e))?,
            path: self.path.clone(),
        })
    }

    fn display(&self, name: &Path) -> PathBuf {
        self.path.join(name)
    }

    fn open_raw(&self, name: &Path, flags: libc::c_int, mode: libc::mode_t) -> Result<File> {
        open_beneath(self.fd.as_fd(), name, flags, mode, false)
            .map(File::from)
            .map_err(|e| open_error(e, &self.display(name)))
    }

    /// Opens the directory `name` beneath this one (`""` is this one).
    pub fn open_dir(&self, name: impl AsRef<Path>) -> Result<Dir> {
        let name = name.as_ref();
        let path = self.display(name);
        let fd = open_beneath(
            self.fd.as_fd(),
            name,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            false,
        )
        .map_err(|e| match e {
            OpenError::Io(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR too.
                if self.stat(name).is_ok_and(|st| st.kind() == Kind::Symlink) {
                    ConfinedError::Escapes { path: path.clone() }
                } else {
                    ConfinedError::NotADirectory { path: path.clone() }
                }
            }
            e => open_error(e, &path),
        })?;
        Ok(Dir { fd, path })
    }

    /// Opens the regular file `name` for reading; reads stop at the size it
    /// has now.
    pub fn open_file(&self, name: impl AsRef<Path>) -> Result<ReadFile> {
        let name = name.as_ref();
        let file = self.open_raw(name, libc::O_RDONLY, 0)?;
        ReadFile::new(file, self.display(name))
    }

    /// Creates the regular file `name`, which must not exist (not even as a
    /// symlink), for writing.
    pub fn create_new(&self, name: impl AsRef<Path>, mode: u32) -> Result<File> {
        let name = name.as_ref();
        let file = self.open_raw(
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            mode as libc::mode_t,
        )?;
        self.regular(file, name)
    }

    /// Creates the regular file `name` for writing, replacing whatever has
    /// that name (a file, a symlink: unlinked, never written through).
    pub fn create_replacing(&self, name: impl AsRef<Path>, mode: u32) -> Result<File> {
        self.create_replacing_with(name.as_ref(), libc::O_WRONLY, mode)
    }

    /// Like [`Dir::create_replacing`], open for reading too (`pread` of
    /// what was written, `splice` with an offset).
    pub fn create_replacing_read_write(&self, name: impl AsRef<Path>, mode: u32) -> Result<File> {
        self.create_replacing_with(name.as_ref(), libc::O_RDWR, mode)
    }

    fn create_replacing_with(&self, name: &Path, access: libc::c_int, mode: u32) -> Result<File> {
        let create = || {
            let flags = access | libc::O_CREAT | libc::O_EXCL;
            self.open_raw(name, flags, mode as libc::mode_t)
        };
        // Usually nothing has the name: one syscall. Otherwise it is
        // unlinked (a symlink too, never followed) and created again.
        let file = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match self.remove_file(name) {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
                create()?
            }
            other => other?,
        };
        self.regular(file, name)
    }

    /// Opens the existing regular file `name` for writing (`append`: every
    /// write at its end), or creates it when `create`.
    pub fn open_writable(
        &self,
        name: impl AsRef<Path>,
        append: bool,
        create: Option<u32>,
    ) -> Result<File> {
        let name = name.as_ref();
        let mut flags = libc::O_WRONLY;
        if append {
            flags |= libc::O_APPEND;
        }
        let mode = create.map_or(0, |m| {
            flags |= libc::O_CREAT;
            m as libc::mode_t
        });
        let file = self.open_raw(name, flags, mode)?;
        self.regular(file, name)
    }

    /// Opens the existing regular file `name` for reading and writing at
    /// explicit offsets (`pread`/`pwrite`, `splice` with an offset).
    pub fn open_read_write(&self, name: impl AsRef<Path>) -> Result<File> {
        let name = name.as_ref();
        let file = self.open_raw(name, libc::O_RDWR, 0)?;
        self.regular(file, name)
    }

    fn regular(&self, file: File, name: &Path) -> Result<File> {
        let meta = file
            .metadata()
            .map_err(|e| ConfinedError::io("stat", self.display(name), e))?;
        if !meta.is_file() {
            return Err(ConfinedError::NotAFile {
                path: self.display(name),
            });
        }
        Ok(file)
    }

    /// `lstat` of `name`, a single entry of this directory.
    pub fn stat(&self, name: impl AsRef<OsStr>) -> Result<Stat> {
        let name = name.as_ref();
        let path = self.display(Path::new(name));
        let c_name = c_string(Path::new(name)).map_err(|e| open_error(e, &path))?;
        // SAFETY: an all-zero stat is valid; fstatat fills it in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, NUL-terminated name, valid out pointer.
        let r = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c_name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r < 0 {
            return Err(ConfinedError::io("stat", path, io::Error::last_os_error()));
        }
        Ok(Stat(st))
    }

    /// `fstat` of the directory itself.
    pub fn stat_self(&self) -> Result<Stat> {
        // SAFETY: an all-zero stat is valid; fstat fills it in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out pointer.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } < 0 {
            return Err(ConfinedError::io(
                "stat",
                &self.path,
                io::Error::last_os_error(),
            ));
        }
        Ok(Stat(st))
    }

    /// The names in the directory (not `.` and `..`), read through its own
    /// descriptor from its start: `getdents64` straight into a buffer, three
    /// system calls for a small directory where `opendir` on a duplicate
    /// made eight (the log readers list a container's log dir at every end
    /// of what is written).
    pub fn names(&self) -> Result<Vec<OsString>> {
        let err = |e: io::Error| ConfinedError::io("read dir", &self.path, e);
        let fd = self.fd.as_raw_fd();
        // SAFETY: lseek on the descriptor this value owns.
        if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        let mut names = Vec::new();
        let mut buf = vec![0u8; DIRENT_BUFFER];
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes to `buf`.
            let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
            let n = match n {
                0 => return Ok(names),
                n if n < 0 => match io::Error::last_os_error() {
                    e if e.kind() == io::ErrorKind::Interrupted => continue,
                    e => return Err(err(e)),
                },
                n => n as usize,
            };
            let mut records = &buf[..n.min(buf.len())];
            while !records.is_empty() {
                let Some((name, rest)) = dirent_name(records) else {
                    return Err(err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed getdents64 record",
                    )));
                };
                if name != b"." && name != b".." {
                    names.push(OsStr::from_bytes(name).to_os_string());
                }
                records = rest;
            }
        }
    }

    /// The entries with their `lstat`; entries removed between listing and
    /// stat are left out.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for name in self.names()? {
            match self.stat(&name) {
                Ok(stat) => entries.push(Entry { name, stat }),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(entries)
    }

    /// The target of the symlink `name` (read, never followed).
    pub fn read_link(&self, name: impl AsRef<OsStr>) -> Result<PathBuf> {
        let name = name.as_ref();
        let path = self.display(Path::new(name));
        let c_name = c_string(Path::new(name)).map_err(|e| open_error(e, &path))?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
        // SAFETY: valid descriptor, NUL-terminated name, buffer of the size
        // passed.
        let n = unsafe {
            libc::readlinkat(
                self.fd.as_raw_fd(),
                c_name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(ConfinedError::io(
                "readlink",
                path,
                io::Error::last_os_error(),
            ));
        }
        buf.truncate(n as usize);
        Ok(PathBuf::from(
            <OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf),
        ))
    }

    /// Removes the entry `name` (not a directory); a symlink itself goes,
    /// never its target.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<()> {
        self.unlink(name.as_ref(), 0, "remove")
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: impl AsRef<OsStr>) -> Result<()> {
        self.unlink(name.as_ref(), libc::AT_REMOVEDIR, "remove dir")
    }

    fn unlink(&self, name: &OsStr, flags: libc::c_int, op: &'static str) -> Result<()> {
        let path = self.display(Path::new(name));
        let c_name = single_name(name, &path)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_name.as_ptr(), flags) } < 0 {
            return Err(ConfinedError::io(op, path, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Renames `from` to `to`, both entries of this directory; whatever `to`
    /// was (a symlink included) is replaced, not followed.
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> Result<()> {
        let path = self.display(Path::new(to.as_ref()));
        let c_from = single_name(from.as_ref(), &path)?;
        let c_to = single_name(to.as_ref(), &path)?;
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid descriptor and NUL-terminated names.
        if unsafe { libc::renameat(fd, c_from.as_ptr(), fd, c_to.as_ptr()) } < 0 {
            return Err(ConfinedError::io(
                "rename to",
                path,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Makes the symlink `name` pointing at `target` (which is not looked
    /// at).
    pub fn symlink(&self, target: impl AsRef<Path>, name: impl AsRef<OsStr>) -> Result<()> {
        let path = self.display(Path::new(name.as_ref()));
        let c_name = single_name(name.as_ref(), &path)?;
        let c_target = c_string(target.as_ref()).map_err(|e| open_error(e, &path))?;
        // SAFETY: valid descriptor and NUL-terminated strings.
        if unsafe { libc::symlinkat(c_target.as_ptr(), self.fd.as_raw_fd(), c_name.as_ptr()) } < 0 {
            return Err(ConfinedError::io(
                "symlink",
                path,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Removes `name` and, if it is a directory, everything below it, never
    /// following a symlink and never entering another mount. A missing
    /// `name` is fine.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<()> {
        crate::remove::remove_tree_at(self, name.as_ref())
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A name of one component: no `/`, not `..`, not empty.
fn single_name(name: &OsStr, path: &Path) -> Result<std::ffi::CString> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes == b".." || bytes == b"." {
        return Err(ConfinedError::Escapes { path: path.into() });
    }
    c_string(Path::new(name)).map_err(|e| open_error(e, path))
}

pub(crate) fn open_error(e: OpenError, path: &Path) -> ConfinedError {
    match e {
        OpenError::Escapes => ConfinedError::Escapes { path: path.into() },
        OpenError::Io(e) => ConfinedError::io("open", path, e),
    }
}

impl Dir {
    /// Opens the subdirectory `name` (a single entry) for a removal walk:
    /// no symlink, no mount crossed.
    pub(crate) fn open_child_same_mount(&self, name: &OsStr) -> Result<Dir> {
        let path = self.display(Path::new(name));
        let fd = open_beneath(
            self.fd.as_fd(),
            Path::new(name),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            true,
        )
        .map_err(|e| match e {
            OpenError::Escapes => ConfinedError::CrossesMount { path: path.clone() },
            e => open_error(e, &path),
        })?;
        Ok(Dir { fd, path })
    }

    /// Opens this directory's parent (`..`), for a removal walk going back
    /// up.
    pub(crate) fn open_parent(&self, path: PathBuf) -> Result<Dir> {
        // SAFETY: valid descriptor and a NUL-terminated literal; `..` is
        // never a symlink.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c"..".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        if fd < 0 {
            return Err(ConfinedError::io("open", path, io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Dir { fd, path })
    }
}

/// The buffer one `getdents64` fills.
const DIRENT_BUFFER: usize = 8192;

/// The name of the first `linux_dirent64` record in `records` and the
/// records after it: `d_ino` (8 bytes), `d_off` (8), `d_reclen` (2),
/// `d_type` (1), then the name, NUL-terminated and padded to `d_reclen`.
fn dirent_name(records: &[u8]) -> Option<(&[u8], &[u8])> {
    const NAME_AT: usize = 19;
    let reclen = u16::from_ne_bytes([*records.get(16)?, *records.get(17)?]) as usize;
    if reclen <= NAME_AT || reclen > records.len() {
        return None;
    }
    let (record, rest) = records.split_at(reclen);
    let name = &record[NAME_AT..];
    let end = name.iter().position(|b| *b == 0)?;
    Some((&name[..end], rest))
}

#[cfg(test)]
mod tests {
    use super::dirent_name;

    fn record(name: &[u8], reclen: u16) -> Vec<u8> {
        let mut r = vec![0u8; 19];
        r[16..18].copy_from_slice(&reclen.to_ne_bytes());
        r.extend_from_slice(name);
        r.resize(reclen as usize, 0);
        r
    }

    #[test]
    fn records_are_split_by_their_length_and_bad_ones_refused() {
        let mut records = record(b"one", 24);
        records.extend(record(b"two", 32));
        let (first, rest) = dirent_name(&records).unwrap();
        assert_eq!(first, b"one");
        let (second, rest) = dirent_name(rest).unwrap();
        assert_eq!((second, rest.len()), (&b"two"[..], 0));
        // A length past the buffer, one that leaves no room for a name, a
        // name without its NUL, and a cut header are all refused.
        assert!(dirent_name(&record(b"one", 24)[..20]).is_none());
        assert!(dirent_name(&record(b"", 19)).is_none());
        assert!(dirent_name(&record(b"abcde", 24)).is_none());
        assert!(dirent_name(&[0u8; 10]).is_none());
    }
}
