//! The timestamp index `S.idx`: lines of `<offset> <unix ns>`, each
//! meaning "the line starting at this offset, and the bytes after it until
//! the next entry, arrived at this time" (see docs/log-format.md).

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_protocol::logs::index::parse;
pub use berth_protocol::logs::index::Entry;

use super::{LogError, Stream};

/// A stream's index, loaded and refreshable as the writer appends to it.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Bytes of the file parsed so far (complete lines only).
    parsed: u64,
    /// The file's inode: the writer replaces the file when it drops
    /// entries, and then everything is read again.
    inode: Option<u64>,
}

/// The index file of a stream in a sandbox.
pub fn path(dir: &Path, stream: Stream) -> PathBuf {
    dir.join(berth_protocol::logs::index::index_name(stream.name()))
}

impl Index {
    /// Loads the index of `stream`; a missing file is an empty index.
    pub fn load(dir: &Path, stream: Stream) -> Result<Index, LogError> {
        let mut index = Index {
            path: path(dir, stream),
            entries: Vec::new(),
            parsed: 0,
            inode: None,
        };
        index.refresh()?;
        Ok(index)
    }

    /// An index over given entries (no file).
    pub fn from_entries(entries: Vec<Entry>) -> Index {
        Index {
            path: PathBuf::new(),
            entries,
            parsed: 0,
            inode: None,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reads what the writer appended since the last look, or everything
    /// when the file was replaced.
    pub fn refresh(&mut self) -> Result<(), LogError> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        let mut file = match super::open_file(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LogError::read(&self.path)(e)),
        };
        let meta = file.metadata().map_err(LogError::read(&self.path))?;
        if self.inode != Some(meta.ino()) || meta.len() < self.parsed {
            self.entries.clear();
            self.parsed = 0;
            self.inode = Some(meta.ino());
        }
        if meta.len() == self.parsed {
            return Ok(());
        }
        let mut text = Vec::new();
        file.seek_to(self.parsed);
        file.read_to_end(&mut text)
            .map_err(LogError::read(&self.path))?;
        let consumed = parse(&text, &mut self.entries);
        self.parsed += consumed as u64;
        Ok(())
    }

    /// When the byte at `offset` arrived: the time of the last entry at or
    /// below it. `None` when the index starts above it or is empty.
    pub fn time_at(&self, offset: u64) -> Option<i64> {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        (i > 0).then(|| self.entries[i - 1].time)
    }

    /// Like [`Index::time_at`], but never unknown: below the first entry
    /// the first entry's time, and without entries at all `now` (bytes
    /// whose entry is not written yet have just arrived).
    pub fn time_at_or_nearest(&self, offset: u64, now: i64) -> i64 {
        self.time_at(offset)
            .or_else(|| self.entries.first().map(|e| e.time))
            .unwrap_or(now)
    }

    /// The offset of the first chunk that arrived at or after `time`;
    /// `None` when nothing indexed did.
    pub fn offset_since(&self, time: i64) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.time >= time)
            .map(|e| e.offset)
    }

    /// The offset of the first line that arrived after `time`: where an
    /// `until` of `time` ends. `None` when nothing indexed did.
    pub fn offset_after(&self, time: i64) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.time > time)
            .map(|e| e.offset)
    }

    /// The first entry offset above `offset`: where the chunk holding
    /// `offset` ends, as far as the index knows.
    pub fn boundary_after(&self, offset: u64) -> Option<u64> {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        self.entries.get(i).map(|e| e.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn offset_to_time_and_time_to_offset() {
        let index = Index::from_entries(vec![
            Entry {
                offset: 10,
                time: 1_000,
            },
            Entry {
                offset: 50,
                time: 2_000,
            },
            Entry {
                offset: 80,
                time: 3_000,
            },
        ]);
        assert_eq!(index.time_at(5), None);
        assert_eq!(index.time_at_or_nearest(5, 9), 1_000);
        assert_eq!(index.time_at(10), Some(1_000));
        assert_eq!(index.time_at(49), Some(1_000));
        assert_eq!(index.time_at(50), Some(2_000));
        assert_eq!(index.time_at(10_000), Some(3_000));
        assert_eq!(index.offset_since(0), Some(10));
        assert_eq!(index.offset_since(1_500), Some(50));
        assert_eq!(index.offset_since(2_000), Some(50));
        assert_eq!(index.offset_since(3_001), None);
        assert_eq!(index.boundary_after(10), Some(50));
        assert_eq!(index.boundary_after(79), Some(80));
        assert_eq!(index.boundary_after(80), None);
        assert_eq!(Index::from_entries(Vec::new()).time_at_or_nearest(3, 9), 9);
    }

    #[test]
    fn refresh_reads_appends_and_rereads_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::load(dir.path(), Stream::Stdout).unwrap();
        assert!(index.entries().is_empty());
        let file_path = path(dir.path(), Stream::Stdout);
        let mut file = std::fs::File::create(&file_path).unwrap();
        file.write_all(b"0 1\n10 2\n2").unwrap();
        index.refresh().unwrap();
        assert_eq!(index.entries().len(), 2);
        file.write_all(b"0 3\n").unwrap();
        index.refresh().unwrap();
        assert_eq!(
            index.entries().last(),
            Some(&Entry {
                offset: 20,
                time: 3
            })
        );
        // Rewritten without the old entries (temp + rename).
        let temp = dir.path().join("stdout.idx.tmp");
        std::fs::write(&temp, "20 3\n").unwrap();
        std::fs::rename(&temp, &file_path).unwrap();
        index.refresh().unwrap();
        assert_eq!(
            index.entries(),
            [Entry {
                offset: 20,
                time: 3
            }]
        );
    }
}
