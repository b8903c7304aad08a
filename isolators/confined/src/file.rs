//! A regular file opened for reading, whose reads stop at the size it had
//! when it was opened: a file that grows (or anything that is not a regular
//! file, which is refused at open) is never read without end.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::ConfinedError;
use crate::Result;

/// A regular file open for reading, bounded by `len`.
#[derive(Debug)]
pub struct ReadFile {
    file: File,
    path: PathBuf,
    /// The size seen at open (or at the last [`ReadFile::refresh`]).
    len: u64,
    /// Where sequential reads stand.
    position: u64,
}

impl ReadFile {
    /// Checks that `file` is a regular file and records its size.
    pub(crate) fn new(file: File, path: PathBuf) -> Result<ReadFile> {
        let meta = file
            .metadata()
            .map_err(|e| ConfinedError::io("stat", &path, e))?;
        if !meta.is_file() {
            return Err(ConfinedError::NotAFile { path });
        }
        Ok(ReadFile {
            file,
            path,
            len: meta.len(),
            position: 0,
        })
    }

    /// The path it was opened as, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bound of reads: its size at open or at the last refresh.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the file's current size as the new bound (for a file that is
    /// appended to while read, e.g. the current log segment). Still a
    /// regular file: the bound is what is there now.
    pub fn refresh(&mut self) -> io::Result<u64> {
        self.len = self.file.metadata()?.len();
        Ok(self.len)
    }

    /// The open file's metadata (`fstat`).
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Moves the sequential read position (clamped to the bound).
    pub fn seek_to(&mut self, position: u64) {
        self.position = position.min(self.len);
    }

    /// The sequential read position.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads at `offset`, never past the bound: 0 at or after it.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let room = self.len.saturating_sub(offset);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        self.file.read_at(&mut buf[..want], offset)
    }
}

impl Read for ReadFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}
