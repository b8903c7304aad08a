//! A stream's segments in a sandbox, and a sequential reader over them by
//! logical offset.
//!
//! The writer rotates, compresses and deletes while we read, so every open
//! may find its file gone: the reader then lists again and retries. Once a
//! file is open its bytes stay readable (a rotated segment never changes;
//! deletion only unlinks), so only opening races.
//!
//! Every listing and open goes through `berth_confined` (see
//! [`super::open_file`]); reads of a plain segment are bounded by its size,
//! which is looked at again only when the reader reaches it.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_confined::{Dir, Kind, ReadFile};
use berth_protocol::logs::segment::parse_name;

use super::{LogError, Stream, RETRIES};

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The logical offset of its first byte.
    pub start: u64,
    pub path: PathBuf,
    /// A `.gz` file: read through a decompressor.
    pub compressed: bool,
}

/// An open segment's bytes.
enum Source {
    /// Bounded by the size seen at open, until [`Source::refresh`].
    Plain(ReadFile),
    /// A rotated segment, never appended to.
    Compressed(Box<flate2::read::MultiGzDecoder<io::BufReader<ReadFile>>>),
}

impl Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(file) => file.read(buf),
            Source::Compressed(decoder) => decoder.read(buf),
        }
    }

    /// Takes in what was appended since the last look. Whether it grew.
    fn refresh(&mut self) -> io::Result<bool> {
        match self {
            Source::Plain(file) => {
                let before = file.len();
                Ok(file.refresh()? > before)
            }
            Source::Compressed(_) => Ok(false),
        }
    }
}

impl Segment {
    /// Opens the segment positioned `skip` bytes into its (decompressed)
    /// content. `NotFound` means it vanished since it was listed.
    fn open(&self, skip: u64) -> io::Result<Source> {
        let mut file = super::open_file(&self.path)?;
        if !self.compressed {
            file.seek_to(skip);
            return Ok(Source::Plain(file));
        }
        // Multi-member tolerant: a gzip writer may have flushed in members.
        let mut decoder = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
        let skipped = io::copy(&mut (&mut decoder).take(skip), &mut io::sink())?;
        if skipped < skip {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("compressed segment holds {skipped} bytes, expected at least {skip}"),
            ));
        }
        Ok(Source::Compressed(Box::new(decoder)))
    }

    /// The segment's content length: its size, or for a compressed one the
    /// decompressed size (which costs a full decompression).
    fn len(&self) -> io::Result<u64> {
        if !self.compressed {
            return Ok(super::open_file(&self.path)?.len());
        }
        let mut source = self.open(0)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            match source.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    }
}

/// Where a logical offset lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The stream has no segments (yet).
    Empty,
    /// Below the oldest kept segment: rotated away. `first` is the first
    /// offset still available.
    RotatedAway { first: u64 },
    /// In the segment at this index of the list (or past the end, in the
    /// last one).
    In(usize),
}

/// A stream's segments, ordered by start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments {
    list: Vec<Segment>,
}

impl Segments {
    /// Lists the segments of `stream` in the sandbox `dir`.
    ///
    /// When both `S.<start>` and `S.<start>.gz` exist (compression is under
    /// way), the plain file is used: it is complete for sure, and if it
    /// vanishes before we open it, the retry finds the finished `.gz`.
    ///
    /// Without any segment, a regular file named after the stream is taken
    /// as one segment starting at 0: containers from before rotation.
    pub fn list(dir: &Path, stream: Stream) -> Result<Segments, LogError> {
        let list_error = |source| LogError::List {
            dir: dir.to_path_buf(),
            source,
        };
        let mut list: Vec<Segment> = Vec::new();
        let confined = match Dir::open(dir) {
            Ok(confined) => confined,
            Err(e) if e.is_not_found() => return Ok(Segments::default()),
            Err(e) => return Err(list_error(e.into())),
        };
        for name in confined.names().map_err(|e| list_error(e.into()))? {
            let Some((start, compressed)) =
                name.to_str().and_then(|n| parse_name(stream.name(), n))
            else {
                continue;
            };
            list.push(Segment {
                start,
                path: dir.join(name),
                compressed,
            });
        }
        // Plain before compressed at equal starts, then keep the first.
        list.sort_by_key(|s| (s.start, s.compressed));
        list.dedup_by_key(|s| s.start);
        if list.is_empty()
            && confined
                .stat(stream.name())
                .is_ok_and(|st| st.kind() == Kind::File)
        {
            list.push(Segment {
                start: 0,
                path: dir.join(stream.name()),
                compressed: false,
            });
        }
        Ok(Segments { list })
    }

    pub fn as_slice(&self) -> &[Segment] {
        &self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first logical offset still available.
    pub fn first(&self) -> Option<u64> {
        self.list.first().map(|s| s.start)
    }

    /// Where `offset` lies.
    pub fn locate(&self, offset: u64) -> Location {
        match self.list.first() {
            None => Location::Empty,
            Some(first) if offset < first.start => Location::RotatedAway { first: first.start },
            Some(_) => Location::In(self.list.partition_point(|s| s.start <= offset) - 1),
        }
    }

    /// The start of the segment after the one at `i`, which is where `i`
    /// ends; `None` for the last one.
    pub fn end_of(&self, i: usize) -> Option<u64> {
        self.list.get(i + 1).map(|s| s.start)
    }

    /// The logical end of the stream: the next offset to be written.
    pub fn end(&self) -> io::Result<u64> {
        match self.list.last() {
            None => Ok(0),
            Some(last) => Ok(last.start + last.len()?),
        }
    }
}

/// Lists the segments and their logical end, retrying when the last one
/// vanishes in between (it was compressed or rotated away meanwhile).
pub fn list_with_end(dir: &Path, stream: Stream) -> Result<(Segments, u64), LogError> {
    let mut last_path = dir.join(stream.name());
    for _ in 0..RETRIES {
        let segments = Segments::list(dir, stream)?;
        match segments.end() {
            Ok(end) => return Ok((segments, end)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                last_path = segments
                    .list
                    .last()
                    .map(|s| s.path.clone())
                    .unwrap_or(last_path);
            }
            Err(source) => {
                return Err(LogError::Read {
                    path: segments
                        .list
                        .last()
                        .map(|s| s.path.clone())
                        .unwrap_or(last_path),
                    source,
                })
            }
        }
    }
    Err(LogError::Unstable { path: last_path })
}

/// What a read gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were put in the buffer.
    Data(usize),
    /// Nothing more for now: at the end of what has been written.
    End,
    /// The bytes `from..to` were rotated away before they could be read;
    /// the reader now stands at `to`.
    Skipped { from: u64, to: u64 },
}

/// The open segment a reader is in.
struct Open {
    start: u64,
    path: PathBuf,
    /// Where the segment ends, once a newer segment is known.
    end: Option<u64>,
    source: Source,
}

/// Reads a stream sequentially from a logical offset, across segments.
pub struct Reader {
    dir: PathBuf,
    stream: Stream,
    position: u64,
    open: Option<Open>,
}

impl Reader {
    pub fn new(dir: &Path, stream: Stream, offset: u64) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            stream,
            position: offset,
            open: None,
        }
    }

    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// The logical offset of the next byte to read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads at most `buf.len()` bytes from the current position.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, LogError> {
        loop {
            if self.open.is_none() {
                if let Some(outcome) = self.open_current()? {
                    return Ok(outcome);
                }
            }
            let open = self.open.as_mut().expect("opened above");
            let want = match open.end {
                Some(end) => buf.len().min(end.saturating_sub(self.position) as usize),
                None => buf.len(),
            };
            let n = if want == 0 {
                0
            } else {
                open.source
                    .read(&mut buf[..want])
                    .map_err(LogError::read(&open.path))?
            };
            if n > 0 {
                self.position += n as u64;
                return Ok(ReadOutcome::Data(n));
            }
            match open.end {
                Some(end) if self.position >= end => self.open = None,
                Some(end) => {
                    // A rotated segment shorter than the next one's start
                    // says: bytes that cannot be found anywhere. Not in the
                    // contract; step over rather than loop.
                    let from = self.position;
                    self.position = end;
                    self.open = None;
                    return Ok(ReadOutcome::Skipped { from, to: end });
                }
                None => {
                    // At the end of what the newest segment held when last
                    // looked at: look again.
                    if open.source.refresh().map_err(LogError::read(&open.path))? {
                        continue;
                    }
                    // If a newer one appeared, this one is complete (the
                    // writer rotates only after writing it); take in what
                    // came just before the rotation and read once more.
                    let segments = Segments::list(&self.dir, self.stream)?;
                    match segments.as_slice().iter().find(|s| s.start > open.start) {
                        Some(next) => {
                            open.end = Some(next.start);
                            open.source.refresh().map_err(LogError::read(&open.path))?;
                        }
                        None => return Ok(ReadOutcome::End),
                    }
                }
            }
        }
    }

    /// Opens the segment holding the position. Returns an outcome when the
    /// read must answer it directly (nothing written yet, or skipped).
    fn open_current(&mut self) -> Result<Option<ReadOutcome>, LogError> {
        let mut vanished = self.dir.join(self.stream.name());
        for _ in 0..RETRIES {
            let segments = Segments::list(&self.dir, self.stream)?;
            let i = match segments.locate(self.position) {
                Location::Empty => return Ok(Some(ReadOutcome::End)),
                Location::RotatedAway { first } => {
                    let from = self.position;
                    self.position = first;
                    return Ok(Some(ReadOutcome::Skipped { from, to: first }));
                }
                Location::In(i) => i,
            };
            let segment = &segments.as_slice()[i];
            match segment.open(self.position - segment.start) {
                Ok(source) => {
                    self.open = Some(Open {
                        start: segment.start,
                        path: segment.path.clone(),
                        end: segments.end_of(i),
                        source,
                    });
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => vanished = segment.path.clone(),
                Err(source) => {
                    return Err(LogError::Read {
                        path: segment.path.clone(),
                        source,
                    })
                }
            }
        }
        Err(LogError::Unstable { path: vanished })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use crate::logs::testing::{segment_name, write_segments};

    fn numbered(lines: usize) -> Vec<u8> {
        (0..lines)
            .flat_map(|i| format!("{i:06}\n").into_bytes())
            .collect()
    }

    fn read_all(reader: &mut Reader) -> (Vec<u8>, Vec<(u64, u64)>) {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        let mut buf = [0u8; 333];
        loop {
            match reader.read(&mut buf).unwrap() {
                ReadOutcome::Data(n) => out.extend_from_slice(&buf[..n]),
                ReadOutcome::Skipped { from, to } => skipped.push((from, to)),
                ReadOutcome::End => return (out, skipped),
            }
        }
    }

    #[test]
    fn offsets_map_to_segments_and_rotated_away_ranges_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let data = numbered(100); // 700 bytes
        let end = write_segments(dir.path(), Stream::Stdout, 1000, &data, 256, &[1]);
        std::fs::write(dir.path().join("stdout.idx"), "").unwrap();
        std::fs::write(dir.path().join(segment_name(Stream::Stderr, 0)), "other").unwrap();
        let segments = Segments::list(dir.path(), Stream::Stdout).unwrap();
        let starts: Vec<u64> = segments.as_slice().iter().map(|s| s.start).collect();
        assert_eq!(starts, [1000, 1256, 1512]);
        assert!(segments.as_slice()[1].compressed);
        assert_eq!(segments.end().unwrap(), end);
        assert_eq!(end, 1700);
        assert_eq!(segments.locate(999), Location::RotatedAway { first: 1000 });
        assert_eq!(segments.locate(0), Location::RotatedAway { first: 1000 });
        assert_eq!(segments.locate(1000), Location::In(0));
        assert_eq!(segments.locate(1255), Location::In(0));
        assert_eq!(segments.locate(1256), Location::In(1));
        assert_eq!(segments.locate(1600), Location::In(2));
        assert_eq!(segments.locate(5000), Location::In(2));
        assert_eq!(segments.end_of(1), Some(1512));
        assert_eq!(segments.end_of(2), None);

        // From inside the compressed segment to the end.
        let mut reader = Reader::new(dir.path(), Stream::Stdout, 1300);
        let (out, skipped) = read_all(&mut reader);
        assert_eq!(out, &data[300..]);
        assert!(skipped.is_empty());
        assert_eq!(reader.position(), 1700);

        // From a rotated-away offset: told, then everything kept.
        let mut reader = Reader::new(dir.path(), Stream::Stdout, 10);
        let (out, skipped) = read_all(&mut reader);
        assert_eq!(skipped, [(10, 1000)]);
        assert_eq!(out, data);
    }

    #[test]
    fn both_plain_and_compressed_use_one_and_legacy_file_is_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        write_segments(dir.path(), Stream::Stderr, 0, b"abcdef", 3, &[0]);
        std::fs::write(dir.path().join(segment_name(Stream::Stderr, 0)), "abc").unwrap();
        let segments = Segments::list(dir.path(), Stream::Stderr).unwrap();
        assert_eq!(segments.as_slice().len(), 2);
        assert!(!segments.as_slice()[0].compressed);
        let (out, _) = read_all(&mut Reader::new(dir.path(), Stream::Stderr, 0));
        assert_eq!(out, b"abcdef");

        let legacy = tempfile::tempdir().unwrap();
        assert!(Segments::list(legacy.path(), Stream::Stdout)
            .unwrap()
            .is_empty());
        std::fs::write(legacy.path().join("stdout"), "old\n").unwrap();
        let (out, _) = read_all(&mut Reader::new(legacy.path(), Stream::Stdout, 1));
        assert_eq!(out, b"ld\n");
        // A symlink named like the stream is the new layout's pointer, not
        // a legacy file.
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/hostname", linked.path().join("stdout")).unwrap();
        assert!(Segments::list(linked.path(), Stream::Stdout)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reader_carries_on_across_rotation_and_compression_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join(segment_name(Stream::Stdout, 0));
        std::fs::write(&first, "hello ").unwrap();
        let mut reader = Reader::new(dir.path(), Stream::Stdout, 0);
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).unwrap(), ReadOutcome::Data(6));
        assert_eq!(reader.read(&mut buf).unwrap(), ReadOutcome::End);
        // The writer appends, then rotates; the first segment is then
        // compressed and its plain file removed.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&first)
            .unwrap()
            .write_all(b"world\n")
            .unwrap();
        std::fs::write(dir.path().join(segment_name(Stream::Stdout, 12)), "next\n").unwrap();
        write_segments(dir.path(), Stream::Stdout, 0, b"hello world\n", 100, &[0]);
        std::fs::remove_file(&first).unwrap();
        let (out, skipped) = read_all(&mut reader);
        assert_eq!(out, b"world\nnext\n");
        assert!(skipped.is_empty());

        // A new reader opens the compressed one.
        let (out, _) = read_all(&mut Reader::new(dir.path(), Stream::Stdout, 3));
        assert_eq!(out, b"lo world\nnext\n");
    }

    #[test]
    fn an_empty_current_segment_is_the_end_not_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment_name(Stream::Stdout, 0)), "abc").unwrap();
        std::fs::write(dir.path().join(segment_name(Stream::Stdout, 3)), "").unwrap();
        let mut reader = Reader::new(dir.path(), Stream::Stdout, 0);
        assert_eq!(read_all(&mut reader), (b"abc".to_vec(), Vec::new()));
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), ReadOutcome::End);
        assert_eq!(reader.position(), 3);
    }

    #[test]
    fn planted_links_fifos_and_growth_are_never_followed_or_waited_on() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), "secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            host.path().join("secret"),
            dir.path().join(segment_name(Stream::Stdout, 0)),
        )
        .unwrap();
        nix::unistd::mkfifo(
            &dir.path().join(segment_name(Stream::Stderr, 0)),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let mut buf = [0u8; 64];
        for stream in Stream::ALL {
            let err = Reader::new(dir.path(), stream, 0)
                .read(&mut buf)
                .unwrap_err();
            assert!(matches!(err, LogError::Read { .. }), "{err}");
            assert!(list_with_end(dir.path(), stream).is_err());
        }
        // A regular segment that grows is read up to what is there at each
        // look, and followed as it grows.
        let growing = dir.path().join(segment_name(Stream::Stdout, 0));
        std::fs::remove_file(&growing).unwrap();
        std::fs::write(&growing, "ab").unwrap();
        let mut reader = Reader::new(dir.path(), Stream::Stdout, 0);
        assert_eq!(reader.read(&mut buf).unwrap(), ReadOutcome::Data(2));
        assert_eq!(reader.read(&mut buf).unwrap(), ReadOutcome::End);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&growing)
            .unwrap()
            .write_all(b"cd")
            .unwrap();
        assert_eq!(reader.read(&mut buf).unwrap(), ReadOutcome::Data(2));
        assert_eq!(&buf[..2], b"cd");
    }

    #[test]
    fn a_segment_vanishing_before_open_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        write_segments(dir.path(), Stream::Stdout, 0, b"0123456789", 5, &[]);
        let segments = Segments::list(dir.path(), Stream::Stdout).unwrap();
        // Rotated away after that listing: the reader lists again.
        std::fs::remove_file(&segments.as_slice()[0].path).unwrap();
        let mut reader = Reader::new(dir.path(), Stream::Stdout, 0);
        let (out, skipped) = read_all(&mut reader);
        assert_eq!(skipped, [(0, 5)]);
        assert_eq!(out, b"56789");
    }
}
