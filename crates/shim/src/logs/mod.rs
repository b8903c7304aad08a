//! Where the container's stdout and stderr go, as docs/log-format.md lays
//! out: per stream, append-only segments rotated at a size and pruned past a
//! count, a sparse timestamp index, optional gzip of rotated segments, and
//! counters of what was written, dropped and lost.
//!
//! A `LogSink` moves a stream's bytes from its pipe to its current segment,
//! with splice(2) where the file system allows, so that the bytes never pass
//! through the shim's memory. It reads only as fast as it writes (`block`),
//! unless told to drop what it cannot keep up with (`drop`). A write error
//! (a full disk) never stops it reading: the bytes are counted as lost and
//! writing resumes with a later chunk.

mod compress;
mod counters;
mod index;
mod pipe;
mod rotation;
mod segment;

use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use berth_confined::Dir;

use thiserror::Error;

use crate::note;
use berth_protocol::{LogMode, LogSettings};
use compress::Compressor;
pub use counters::{CountersFile, LogCounters, StreamCounters};
pub use index::Stamp;
use index::TimeIndex;
use rotation::Kept;
use segment::Segment;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("list log segments in {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error("open log {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
}

/// How far into a spliced chunk that continues a line the shim looks for
/// the next line start (reading the chunk back from the page cache): far
/// enough for any ordinary line, short enough that output without newlines
/// is not read twice.
const NEWLINE_SCAN: usize = 4096;

/// The most moved per step in `block` mode: a whole pipe.
const BLOCK_STEP: usize = pipe::CAPACITY;
/// The most written per step in `drop` mode: a step is as long as the pipe
/// goes unwatched, so keep it short.
const DROP_STEP: usize = 128 * 1024;

/// Where a chunk's first newline is.
enum Newline {
    /// At this position in the chunk.
    At(u64),
    /// Nowhere in the chunk.
    None,
    /// Not in the part of the chunk looked at.
    NotWithinScan,
}

/// What one step of pumping did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Bytes came (written, dropped or lost): there may be more.
    Data,
    /// The pipe is empty for now.
    Empty,
    /// The pipe is at end of file or broken: stop watching it.
    Closed,
}

/// One stream's log writer.
pub struct LogSink {
    dir: Dir,
    stream: &'static str,
    settings: LogSettings,
    segment: Segment,
    kept: Kept,
    index: TimeIndex,
    compressor: Option<Compressor>,
    counters: StreamCounters,
    /// The pipe's size, for the drop mode's watermark.
    capacity: usize,
    /// splice(2) works on this file system.
    splice: bool,
    /// Writes are failing: said once, until one succeeds again.
    failing: bool,
    index_failing: bool,
    /// The last byte written did not end a line: the next chunk's first
    /// byte continues it (and keeps its time).
    line_open: bool,
}

impl LogSink {
    /// Opens `stream`'s log in `dir`, carrying on after segments already
    /// there (their offsets stay valid).
    pub fn open(
        dir: &Path,
        stream: &'static str,
        settings: &LogSettings,
    ) -> Result<LogSink, LogError> {
        // The log dir is root's and out of the container's reach; it is
        // still only ever used through its descriptor (berth_confined).
        let dir = &Dir::open(dir).map_err(|source| LogError::Open {
            path: dir.into(),
            source: source.into(),
        })?;
        let found = segment::list(dir, stream).map_err(|source| LogError::List {
            path: dir.path().into(),
            source,
        })?;
        let open_err = |start, source| LogError::Open {
            path: dir.path().join(segment::plain_name(stream, start)),
            source,
        };
        let segment = match found.last() {
            Some(last) if last.plain => {
                Segment::reopen(dir, stream, last.start).map_err(|e| open_err(last.start, e))?
            }
            Some(last) => {
                // Only a compressed last segment: carry on after its content.
                let gz = segment::compressed_name(stream, last.start);
                let len =
                    compress::decompressed_len(dir, &gz).map_err(|e| open_err(last.start, e))?;
                let start = last.start + len;
                Segment::create(dir, stream, start).map_err(|e| open_err(start, e))?
            }
            None => Segment::create(dir, stream, 0).map_err(|e| open_err(0, e))?,
        };
        let mut starts: Vec<u64> = found.iter().map(|f| f.start).collect();
        if starts.last() != Some(&segment.start()) {
            starts.push(segment.start());
        }
        let index = TimeIndex::open(dir, stream).map_err(|source| LogError::Open {
            path: dir.path().join(index::index_name(stream)),
            source,
        })?;
        let mut compressor = match settings.compress {
            true => Some(Compressor::new(
                dir.try_clone().map_err(|source| LogError::Open {
                    path: dir.path().into(),
                    source: source.into(),
                })?,
                stream,
            )),
            false => None,
        };
        if let Some(c) = &mut compressor {
            // Left behind by an earlier shim that ended before compressing.
            for f in &found {
                if f.plain && f.start != segment.start() {
                    c.enqueue(f.start);
                }
            }
        }
        let mut sink = LogSink {
            dir: dir.try_clone().map_err(|source| LogError::Open {
                path: dir.path().into(),
                source: source.into(),
            })?,
            stream,
            settings: settings.clone(),
            counters: StreamCounters {
                bytes: segment.end(),
                ..StreamCounters::default()
            },
            kept: Kept::new(starts, settings.max_files),
            segment,
            index,
            compressor,
            capacity: pipe::CAPACITY,
            splice: true,
            failing: false,
            index_failing: false,
            line_open: false,
        };
        sink.line_open = sink.ends_inside_line();
        sink.prune();
        sink.link_current();
        Ok(sink)
    }

    /// Sizes the stream's pipe. Before the container starts writing.
    pub fn prepare(&mut self, pipe: BorrowedFd<'_>) {
        self.capacity = match pipe::set_capacity(pipe, pipe::CAPACITY) {
            Ok(n) => n,
            Err(e) => {
                note(format_args!("enlarge {} pipe: {e}", self.stream));
                pipe::capacity(pipe).unwrap_or(pipe::CAPACITY)
            }
        };
    }

    pub fn counters(&self) -> StreamCounters {
        self.counters
    }

    /// Whether background work (compression) wants [`LogSink::tick`] soon.
    pub fn busy(&self) -> bool {
        self.compressor.as_ref().is_some_and(Compressor::busy)
    }

    /// Reaps and starts compression children. Never blocks.
    pub fn tick(&mut self) {
        if let Some(c) = &mut self.compressor {
            c.poll();
        }
    }

    /// At exit: finishes compressing rotated segments.
    pub fn finish(&mut self) {
        if let Some(c) = &mut self.compressor {
            c.finish();
        }
    }

    /// Moves one chunk from `pipe`, which arrived at `at`, to the log.
    /// `scratch` is for the bytes that do pass through memory (dropped,
    /// lost, or copied where splice does not work).
    pub fn pump(&mut self, pipe: BorrowedFd<'_>, at: Stamp, scratch: &mut [u8]) -> Pumped {
        let mut step = BLOCK_STEP;
        if self.settings.mode == LogMode::Drop {
            step = DROP_STEP;
            let excess = pipe::excess(pipe::pending(pipe).unwrap_or(0), self.capacity);
            if excess > 0 {
                match pipe::discard(pipe, excess, scratch) {
                    Ok((n, eof)) => {
                        self.counters.dropped_bytes += n as u64;
                        if eof {
                            return Pumped::Closed;
                        }
                    }
                    Err(e) => return self.broken(e),
                }
            }
        }
        if self.segment.size() >= self.settings.max_size {
            if let Err(e) = self.rotate() {
                self.write_failed(&e);
                return self.lose(pipe, step, scratch);
            }
        }
        // Never past max_size: a segment is rotated exactly at its limit.
        let len = self.segment.room(self.settings.max_size).min(step as u64) as usize;
        let before = self.segment.end();
        if self.splice {
            match self.segment.splice_from(pipe, len) {
                Ok(0) => return Pumped::Closed,
                Ok(n) => {
                    self.wrote(before, n, at, None, scratch);
                    return Pumped::Data;
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Pumped::Empty,
                    Some(libc::EINTR) => return Pumped::Data,
                    Some(libc::EINVAL) => {
                        note(format_args!(
                            "splice to {} not supported, copying instead: {e}",
                            self.segment.path().display()
                        ));
                        self.splice = false;
                    }
                    _ => {
                        self.write_failed(&e);
                        return self.lose(pipe, len, scratch);
                    }
                },
            }
        }
        let want = len.min(scratch.len());
        match pipe::read_into(pipe, &mut scratch[..want]) {
            Ok(pipe::Read::Data(n)) => {
                let (written, err) = self.segment.write(&scratch[..n]);
                if written > 0 {
                    let (data, spare) = scratch.split_at_mut(written);
                    self.wrote(before, written, at, Some(data), spare);
                }
                if let Some(e) = err {
                    self.write_failed(&e);
                    self.counters.lost_bytes += (n - written) as u64;
                }
                Pumped::Data
            }
            Ok(pipe::Read::Empty) => Pumped::Empty,
            Ok(pipe::Read::Eof) => Pumped::Closed,
            Err(e) => self.broken(e),
        }
    }

    /// Accounts `n` bytes written at logical offset `offset` (`data`, when
    /// they passed through memory), and indexes the first line they start.
    fn wrote(&mut self, offset: u64, n: usize, at: Stamp, data: Option<&[u8]>, scratch: &mut [u8]) {
        self.counters.bytes += n as u64;
        if self.failing {
            self.failing = false;
            note(format_args!(
                "writing {} again ({} bytes lost so far)",
                self.segment.path().display(),
                self.counters.lost_bytes
            ));
        }
        if let Some(line_start) = self.first_line_start(offset, n, at, data, scratch) {
            match self.index.record(line_start, at) {
                Ok(()) => self.index_failing = false,
                Err(e) if !self.index_failing => {
                    self.index_failing = true;
                    note(format_args!("write {}: {e}", self.index.path().display()));
                }
                Err(_) => {}
            }
        }
    }

    /// Where the first line starting in the chunk `offset..offset + n`
    /// starts, when the chunk needs an index entry (it arrived later than
    /// the last entry); notes whether the chunk leaves a line open. Spliced
    /// bytes are read back from the segment (the page cache) for this.
    fn first_line_start(
        &mut self,
        offset: u64,
        n: usize,
        at: Stamp,
        data: Option<&[u8]>,
        scratch: &mut [u8],
    ) -> Option<u64> {
        let continues = self.line_open;
        self.line_open = match data {
            Some(data) => data.last() != Some(&b'\n'),
            None => self.ends_inside_line(),
        };
        if !self.index.due(at) {
            return None;
        }
        if !continues {
            return Some(offset);
        }
        let newline = match data {
            Some(data) => match data.iter().position(|&b| b == b'\n') {
                Some(i) => Newline::At(i as u64),
                None => Newline::None,
            },
            None => self.find_newline(offset, n, scratch),
        };
        match newline {
            // A line starts after the newline, if the chunk goes on past it.
            Newline::At(i) => Some(offset + i + 1).filter(|&start| start < offset + n as u64),
            Newline::None => None,
            // A line longer than the scan: its continuation gets an entry
            // where the chunk starts. The line keeps its first chunk's time
            // (it starts below the entry); lines starting later in this
            // chunk get this chunk's time, as they should.
            Newline::NotWithinScan => Some(offset),
        }
    }

    /// Whether the segment's last byte leaves a line open.
    fn ends_inside_line(&self) -> bool {
        if self.segment.size() == 0 {
            return false;
        }
        let mut last = [0u8; 1];
        match self.segment.read_at(&mut last, self.segment.end() - 1) {
            Ok(1) => last[0] != b'\n',
            _ => false,
        }
    }

    /// Where the first newline is in the segment's bytes
    /// `offset..offset + n`, relative to `offset`, looking at the first
    /// [`NEWLINE_SCAN`] bytes only.
    fn find_newline(&self, offset: u64, n: usize, scratch: &mut [u8]) -> Newline {
        if scratch.is_empty() {
            return Newline::NotWithinScan;
        }
        let scanned = n.min(NEWLINE_SCAN);
        let mut done = 0usize;
        while done < scanned {
            let want = (scanned - done).min(scratch.len());
            let got = match self
                .segment
                .read_at(&mut scratch[..want], offset + done as u64)
            {
                Ok(0) | Err(_) => return Newline::NotWithinScan,
                Ok(got) => got,
            };
            if let Some(i) = scratch[..got].iter().position(|&b| b == b'\n') {
                return Newline::At((done + i) as u64);
            }
            done += got;
        }
        if scanned < n {
            Newline::NotWithinScan
        } else {
            Newline::None
        }
    }

    /// Says once that writing fails; the bytes are counted by the caller.
    fn write_failed(&mut self, e: &io::Error) {
        if !self.failing {
            self.failing = true;
            note(format_args!(
                "write {}: {e}; counting output as lost until writes succeed",
                self.segment.path().display()
            ));
        }
    }

    /// Reads up to `len` bytes that cannot be written and counts them as
    /// lost, so that the container is never stuck on a full pipe.
    fn lose(&mut self, pipe: BorrowedFd<'_>, len: usize, scratch: &mut [u8]) -> Pumped {
        match pipe::discard(pipe, len.max(1), scratch) {
            Ok((n, eof)) => {
                self.counters.lost_bytes += n as u64;
                match (n, eof) {
                    (_, true) => Pumped::Closed,
                    (0, false) => Pumped::Empty,
                    _ => Pumped::Data,
                }
            }
            Err(e) => self.broken(e),
        }
    }

    fn broken(&mut self, e: io::Error) -> Pumped {
        note(format_args!("read {} pipe: {e}", self.stream));
        Pumped::Closed
    }

    /// Starts the next segment where the current one ends.
    fn rotate(&mut self) -> io::Result<()> {
        let start = self.segment.end();
        let next = Segment::create(&self.dir, self.stream, start)?;
        let old = std::mem::replace(&mut self.segment, next).start();
        self.kept.push(start);
        self.link_current();
        self.prune();
        if let Some(c) = &mut self.compressor {
            if self.kept.contains(old) {
                c.enqueue(old);
            }
        }
        Ok(())
    }

    /// Deletes the segments past `max_files` and their index entries.
    fn prune(&mut self) {
        let gone = self.kept.take_excess();
        if gone.is_empty() {
            return;
        }
        for start in gone {
            if let Some(c) = &mut self.compressor {
                c.cancel(start);
            }
            if let Err(e) = segment::remove(&self.dir, self.stream, start) {
                note(format_args!(
                    "remove {}: {e}",
                    self.dir
                        .path()
                        .join(segment::plain_name(self.stream, start))
                        .display()
                ));
            }
        }
        if let Some(oldest) = self.kept.oldest() {
            if let Err(e) = self.index.prune(oldest) {
                note(format_args!("prune {}: {e}", self.index.path().display()));
            }
        }
    }

    /// Points the `S` symlink at the current segment (atomically: a new link
    /// renamed over the old one; the first link is made in place).
    fn link_current(&self) {
        let link = self.stream;
        let target = segment::plain_name(self.stream, self.segment.start());
        let result = match self.dir.symlink(&target, link) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let tmp = format!(".{}.link.tmp", self.stream);
                let _ = self.dir.remove_file(&tmp);
                self.dir
                    .symlink(&target, &tmp)
                    .and_then(|()| self.dir.rename(&tmp, link))
            }
            other => other,
        };
        if let Err(e) = result {
            note(format_args!("link {link} to {target}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::{AsFd, OwnedFd};

    use nix::fcntl::OFlag;

    fn settings(max_size: u64, max_files: u32, mode: LogMode) -> LogSettings {
        LogSettings {
            max_size,
            max_files,
            compress: false,
            mode,
        }
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap()
    }

    /// Pumps until the pipe is empty.
    fn drain(sink: &mut LogSink, r: &OwnedFd) -> Pumped {
        let mut scratch = vec![0u8; 4096];
        loop {
            match sink.pump(r.as_fd(), Stamp::now(), &mut scratch) {
                Pumped::Data => {}
                other => return other,
            }
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Pumps one chunk written to the pipe, stamped `ns`.
    fn pump_chunk(sink: &mut LogSink, r: &OwnedFd, w: &OwnedFd, data: &[u8], ns: u64) {
        nix::unistd::write(w, data).unwrap();
        let at = Stamp {
            mono: std::time::Instant::now(),
            unix_ns: ns,
        };
        // Tiny for splice, to read spliced bytes back in several steps; a
        // whole chunk when copying.
        let mut scratch = vec![0u8; if sink.splice { 3 } else { 64 }];
        assert_eq!(sink.pump(r.as_fd(), at, &mut scratch), Pumped::Data);
    }

    fn index_entries(dir: &Path) -> Vec<(u64, u64)> {
        fs::read_to_string(dir.join("stdout.idx"))
            .unwrap()
            .lines()
            .map(|l| {
                let (o, t) = l.split_once(' ').unwrap();
                (o.parse().unwrap(), t.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn the_index_has_an_entry_at_each_chunks_first_line_start() {
        for splice in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut sink =
                LogSink::open(dir.path(), "stdout", &settings(1 << 20, 2, LogMode::Block)).unwrap();
            sink.splice = splice;
            let (r, w) = pipe();
            // "ab" opens a line; "c\nde\n" ends it and starts "de" at 4;
            // "fgh" (same time as the last entry) starts a line at 7 but
            // adds nothing; "ij" only continues a line; "k\nl" starts "l".
            pump_chunk(&mut sink, &r, &w, b"ab", 100);
            pump_chunk(&mut sink, &r, &w, b"c\nde\n", 200);
            pump_chunk(&mut sink, &r, &w, b"fgh", 200);
            pump_chunk(&mut sink, &r, &w, b"ij", 300);
            pump_chunk(&mut sink, &r, &w, b"k\nl", 400);
            assert_eq!(
                index_entries(dir.path()),
                [(0, 100), (4, 200), (14, 400)],
                "splice {splice}"
            );
            // A reopened sink knows the last line is still open.
            drop(sink);
            let mut sink =
                LogSink::open(dir.path(), "stdout", &settings(1 << 20, 2, LogMode::Block)).unwrap();
            sink.splice = splice;
            pump_chunk(&mut sink, &r, &w, b"m\nn", 500);
            assert_eq!(index_entries(dir.path()).last(), Some(&(17, 500)));
        }
    }

    #[test]
    fn rotates_at_max_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            LogSink::open(dir.path(), "stdout", &settings(100, 3, LogMode::Block)).unwrap();
        let (r, w) = pipe();
        sink.prepare(r.as_fd());
        let data: Vec<u8> = (0..450u32).map(|i| (i % 251) as u8).collect();
        nix::unistd::write(&w, &data).unwrap();
        assert_eq!(drain(&mut sink, &r), Pumped::Empty);
        // 450 bytes in 100-byte segments: 0, 100, 200, 300, 400; the newest
        // three are kept, the current one holds the last 50 bytes.
        assert_eq!(
            names(dir.path()),
            [
                "stdout",
                "stdout.00000000000000000200",
                "stdout.00000000000000000300",
                "stdout.00000000000000000400",
                "stdout.idx",
            ]
        );
        for start in [200usize, 300, 400] {
            let got =
                fs::read(dir.path().join(segment::plain_name("stdout", start as u64))).unwrap();
            assert_eq!(got, &data[start..(start + 100).min(450)], "segment {start}");
        }
        assert_eq!(
            fs::read_link(dir.path().join("stdout")).unwrap(),
            Path::new("stdout.00000000000000000400")
        );
        // Index entries below the oldest kept start are gone.
        let idx = fs::read_to_string(dir.path().join("stdout.idx")).unwrap();
        let first: u64 = idx.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(first, 200, "{idx}");
        assert_eq!(sink.counters().bytes, 450);
        drop(w);
        assert_eq!(drain(&mut sink, &r), Pumped::Closed);
    }

    #[test]
    fn reopening_carries_on_at_the_same_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(100, 2, LogMode::Block);
        let (r, w) = pipe();
        let mut sink = LogSink::open(dir.path(), "stderr", &s).unwrap();
        nix::unistd::write(&w, &[1u8; 150]).unwrap();
        drain(&mut sink, &r);
        drop(sink);
        let mut sink = LogSink::open(dir.path(), "stderr", &s).unwrap();
        assert_eq!(sink.counters().bytes, 150);
        nix::unistd::write(&w, &[2u8; 100]).unwrap();
        drain(&mut sink, &r);
        assert_eq!(sink.counters().bytes, 250);
        let segs: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| n.starts_with("stderr.0"))
            .collect();
        assert_eq!(
            segs,
            ["stderr.00000000000000000100", "stderr.00000000000000000200"]
        );
        let mut want = vec![1u8; 50];
        want.extend([2u8; 50]);
        assert_eq!(
            fs::read(dir.path().join("stderr.00000000000000000100")).unwrap(),
            want
        );
    }

    #[test]
    fn drop_mode_discards_the_oldest_of_a_full_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            LogSink::open(dir.path(), "stdout", &settings(1 << 30, 5, LogMode::Drop)).unwrap();
        let (r, w) = pipe();
        sink.prepare(r.as_fd());
        let cap = sink.capacity;
        // A pipe filled up while the shim was busy elsewhere.
        let mut filled = 0;
        while let Ok(n) = nix::unistd::write(&w, &vec![b'x'; 65536]) {
            filled += n;
        }
        assert_eq!(filled, cap);
        drain(&mut sink, &r);
        let c = sink.counters();
        assert_eq!(c.dropped_bytes as usize, cap - cap / 4);
        assert_eq!(c.bytes as usize, cap / 4);
        assert_eq!(c.lost_bytes, 0);
        // A pipe that keeps up loses nothing.
        nix::unistd::write(&w, &[b'y'; 1000]).unwrap();
        drain(&mut sink, &r);
        assert_eq!(sink.counters().dropped_bytes as usize, cap - cap / 4);
        assert_eq!(sink.counters().bytes as usize, cap / 4 + 1000);
    }

    #[test]
    fn block_mode_never_drops() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            LogSink::open(dir.path(), "stdout", &settings(1 << 30, 5, LogMode::Block)).unwrap();
        let (r, w) = pipe();
        sink.prepare(r.as_fd());
        let mut filled = 0;
        while let Ok(n) = nix::unistd::write(&w, &vec![b'x'; 65536]) {
            filled += n;
        }
        drain(&mut sink, &r);
        assert_eq!(sink.counters().bytes as usize, filled);
        assert_eq!(sink.counters().dropped_bytes, 0);
    }
}
