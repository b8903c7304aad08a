//! Where the container's stdout and stderr go.
//!
//! A `LogSink` appends verbatim to one file. It is the seam for rotation:
//! everything that writes container output goes through it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("open log {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("write log {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

pub struct LogSink {
    path: PathBuf,
    file: File,
}

impl LogSink {
    /// Opens (creating, mode 0640) `path` for appending.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| LogError::Open {
                path: path.into(),
                source,
            })?;
        Ok(LogSink {
            path: path.into(),
            file,
        })
    }

    /// Appends `data`. No fsync: the write path must not wait for the disk.
    pub fn write(&mut self, data: &[u8]) -> Result<(), LogError> {
        self.file.write_all(data).map_err(|source| LogError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        LogSink::open(&path).unwrap().write(b"one\n").unwrap();
        let mut sink = LogSink::open(&path).unwrap();
        sink.write(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0);
    }
}
