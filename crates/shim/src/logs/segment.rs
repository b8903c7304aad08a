//! Segment files: finding them on disk, and appending to the current one
//! (see docs/log-format.md; their names are berth-protocol's). Every file operation goes through
//! `berth_confined` relative to the log dir's descriptor: no name is ever
//! followed as a symlink, created through one, or truncated.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use berth_confined::Dir;
use berth_protocol::logs::segment::parse_name;
pub use berth_protocol::logs::segment::{compress_temp_name, compressed_name, plain_name};

/// Mode of log files: root reads and writes, its group reads.
const MODE: u32 = 0o640;

/// A segment found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: u64,
    /// `S.<start>` exists.
    pub plain: bool,
    /// `S.<start>.gz` exists.
    pub compressed: bool,
}

/// The segments of `stream` in `dir`, oldest first.
pub fn list(dir: &Dir, stream: &str) -> io::Result<Vec<Found>> {
    let mut found: Vec<Found> = Vec::new();
    for name in dir.names()? {
        let Some(name) = name.to_str().map(str::to_owned) else {
            continue;
        };
        let Some((start, compressed)) = parse_name(stream, &name) else {
            continue;
        };
        match found.iter_mut().find(|f| f.start == start) {
            Some(f) if compressed => f.compressed = true,
            Some(f) => f.plain = true,
            None => found.push(Found {
                start,
                plain: !compressed,
                compressed,
            }),
        }
    }
    found.sort_by_key(|f| f.start);
    Ok(found)
}

/// Removes every file of the segment at `start` (plain, compressed, and a
/// half-built compressed one); missing ones are fine.
pub fn remove(dir: &Dir, stream: &str, start: u64) -> io::Result<()> {
    for name in [
        plain_name(stream, start),
        compressed_name(stream, start),
        compress_temp_name(stream, start),
    ] {
        match dir.remove_file(name) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// The current segment, open for appending at `start + size`.
pub struct Segment {
    path: PathBuf,
    file: File,
    start: u64,
    size: u64,
}

impl Segment {
    /// Creates the segment starting at `start`; whatever had its name (a
    /// leftover, a planted symlink) is unlinked first, never written
    /// through.
    pub fn create(dir: &Dir, stream: &str, start: u64) -> io::Result<Segment> {
        let name = plain_name(stream, start);
        let path = dir.path().join(&name);
        // Read and write: the index reads back where lines start in bytes
        // that were spliced (never through user space).
        let file = dir.create_replacing_read_write(&name, MODE)?;
        Ok(Segment {
            path,
            file,
            start,
            size: 0,
        })
    }

    /// Opens an existing segment to carry on appending to it.
    pub fn reopen(dir: &Dir, stream: &str, start: u64) -> io::Result<Segment> {
        let name = plain_name(stream, start);
        let path = dir.path().join(&name);
        // Not O_APPEND (splice rejects it; the shim is the only writer and
        // tracks the end itself); readable for the index's line starts.
        let file = dir.open_read_write(&name)?;
        let size = file.metadata()?.len();
        Ok(Segment {
            path,
            file,
            start,
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The logical offset of the next byte written.
    pub fn end(&self) -> u64 {
        self.start + self.size
    }

    /// Reads the segment's bytes from logical offset `offset` into `buf`
    /// (as many as are there); returns how many.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(at) = offset.checked_sub(self.start) else {
            return Ok(0);
        };
        let end = self.size.saturating_sub(at).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < end {
            match self.file.read_at(&mut buf[done..end], at + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Bytes that still fit before the segment must rotate.
    pub fn room(&self, max_size: u64) -> u64 {
        max_size.saturating_sub(self.size)
    }

    /// Moves up to `len` bytes from `pipe` to the end of the segment without
    /// copying them through user space. `Ok(0)` means end of file on the pipe;
    /// `EAGAIN` that it is empty. A short count may precede a write error.
    pub fn splice_from(&mut self, pipe: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        let mut offset = self.size as libc::loff_t;
        // SAFETY: both fds are open for the duration of the call; `offset`
        // is a valid pointer. An explicit output offset is needed because
        // splice refuses files opened with O_APPEND.
        let n = unsafe {
            libc::splice(
                pipe.as_raw_fd(),
                std::ptr::null_mut(),
                self.file.as_raw_fd(),
                &mut offset,
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.size += n as u64;
        Ok(n as usize)
    }

    /// Appends as much of `data` as the disk takes. Returns the bytes
    /// written and, if not all of them, why.
    pub fn write(&mut self, data: &[u8]) -> (usize, Option<io::Error>) {
        let mut done = 0;
        while done < data.len() {
            match self.file.write_at(&data[done..], self.size) {
                Ok(0) => return (done, Some(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    done += n;
                    self.size += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_removes_segments() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "stdout.00000000000000000100",
            "stdout.00000000000000000000.gz",
            "stdout.00000000000000000050",
            "stdout.00000000000000000050.gz",
            "stdout.idx",
            "stderr.00000000000000000000",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let confined = Dir::open(dir.path()).unwrap();
        let found = list(&confined, "stdout").unwrap();
        let f = |start, plain, compressed| Found {
            start,
            plain,
            compressed,
        };
        assert_eq!(
            found,
            [f(0, false, true), f(50, true, true), f(100, true, false)]
        );
        remove(&confined, "stdout", 50).unwrap();
        remove(&confined, "stdout", 7).unwrap();
        let starts: Vec<u64> = list(&confined, "stdout")
            .unwrap()
            .iter()
            .map(|f| f.start)
            .collect();
        assert_eq!(starts, [0, 100]);
    }

    #[test]
    fn appends_and_reopens_at_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let mut seg = Segment::create(&dir, "stdout", 10).unwrap();
        assert_eq!(seg.write(b"hello ").0, 6);
        assert_eq!(seg.end(), 16);
        assert_eq!(seg.room(8), 2);
        let mut seg = Segment::reopen(&dir, "stdout", 10).unwrap();
        assert_eq!(seg.end(), 16);
        seg.write(b"world");
        assert_eq!(std::fs::read(seg.path()).unwrap(), b"hello world");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(seg.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0);
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host.path(), "host").unwrap();
        std::os::unix::fs::symlink(host.path(), tmp.path().join(plain_name("stdout", 0))).unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        assert!(Segment::reopen(&dir, "stdout", 0).is_err());
        let mut seg = Segment::create(&dir, "stdout", 0).unwrap();
        seg.write(b"mine");
        assert_eq!(std::fs::read(host.path()).unwrap(), b"host");
        assert_eq!(std::fs::read(seg.path()).unwrap(), b"mine");
    }
}
