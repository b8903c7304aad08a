//! `tail=N`: where the last N lines of a stream begin.
//!
//! Segments are scanned newest first: plain ones backwards in blocks,
//! compressed ones (which cannot be read backwards) decompressed from their
//! start while remembering only the last newlines that may matter.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;

use super::segments::{list_with_end, Segment};
use super::{LogError, Stream, RETRIES};

const BLOCK: usize = 64 * 1024;

/// The logical range holding the last lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailRange {
    pub start: u64,
    /// The end of the stream when it was scanned.
    pub end: u64,
}

/// Finds where the last `lines` lines of `stream` begin. A last line
/// without a newline counts as a line; fewer lines than asked give
/// everything still kept.
pub fn tail(dir: &Path, stream: Stream, lines: u64) -> Result<TailRange, LogError> {
    tail_before(dir, stream, lines, None)
}

/// Like [`tail`], of the bytes below `up_to` only (`until`: the offset of
/// the first line that arrived later), when given.
pub fn tail_before(
    dir: &Path,
    stream: Stream,
    lines: u64,
    up_to: Option<u64>,
) -> Result<TailRange, LogError> {
    let mut vanished = dir.join(stream.name());
    for _ in 0..RETRIES {
        let (segments, end) = list_with_end(dir, stream)?;
        let end = up_to.map_or(end, |up_to| end.min(up_to));
        let first = segments.first().unwrap_or(end);
        if lines == 0 || end <= first {
            return Ok(TailRange { start: end, end });
        }
        // Newlines that end the wanted lines: only those strictly before
        // the last byte (a newline there ends the last line, not a
        // preceding one).
        let limit = end - 1;
        let mut needed = lines;
        let mut start = Some(first);
        let list = segments.as_slice();
        for (i, segment) in list.iter().enumerate().rev() {
            let segment_end = segments.end_of(i).unwrap_or(end).min(limit);
            if segment_end <= segment.start {
                continue;
            }
            let len = segment_end - segment.start;
            match scan(segment, len, needed) {
                Ok(Scan::Found(at)) => {
                    start = Some(segment.start + at + 1);
                    break;
                }
                Ok(Scan::Counted(n)) => needed -= n,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    vanished = segment.path.clone();
                    start = None;
                    break;
                }
                Err(source) => {
                    return Err(LogError::Read {
                        path: segment.path.clone(),
                        source,
                    })
                }
            }
        }
        // `None`: a segment vanished (rotated away or compressed) under
        // the scan; list again.
        if let Some(start) = start {
            return Ok(TailRange { start, end });
        }
    }
    Err(LogError::Unstable { path: vanished })
}

enum Scan {
    /// The `needed`-th newline from the end is at this position in the
    /// segment.
    Found(u64),
    /// The segment holds fewer: this many.
    Counted(u64),
}

/// Looks for the `needed`-th last newline among the first `len` bytes of
/// the segment.
fn scan(segment: &Segment, len: u64, needed: u64) -> io::Result<Scan> {
    let file = super::open_file(&segment.path)?;
    if segment.compressed {
        return scan_forward(
            flate2::read::MultiGzDecoder::new(io::BufReader::new(file)),
            len,
            needed,
        );
    }
    let mut buf = vec![0u8; BLOCK];
    let mut high = len;
    let mut counted = 0;
    while high > 0 {
        let low = high.saturating_sub(BLOCK as u64);
        let block = &mut buf[..(high - low) as usize];
        read_exact_at(&file, block, low)?;
        for (i, _) in block.iter().enumerate().rev().filter(|(_, &b)| b == b'\n') {
            counted += 1;
            if counted == needed {
                return Ok(Scan::Found(low + i as u64));
            }
        }
        high = low;
    }
    Ok(Scan::Counted(counted))
}

/// Fills `buf` from `offset`; a file shorter than its listing said is an
/// error, not a loop.
fn read_exact_at(file: &berth_confined::ReadFile, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => done += n,
        }
    }
    Ok(())
}

/// [`scan`] for a stream that reads only forwards: keeps the positions of
/// the last `needed` newlines seen.
fn scan_forward(mut source: impl Read, len: u64, needed: u64) -> io::Result<Scan> {
    let mut last: VecDeque<u64> = VecDeque::new();
    let mut buf = vec![0u8; BLOCK];
    let mut at = 0u64;
    while at < len {
        let want = buf.len().min((len - at) as usize);
        let n = source.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("compressed segment ends at {at}, expected {len} bytes"),
            ));
        }
        for (i, _) in buf[..n].iter().enumerate().filter(|(_, &b)| b == b'\n') {
            if last.len() as u64 == needed {
                last.pop_front();
            }
            last.push_back(at + i as u64);
        }
        at += n as u64;
    }
    Ok(if last.len() as u64 == needed {
        Scan::Found(last[0])
    } else {
        Scan::Counted(last.len() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::segments::ReadOutcome;
    use crate::logs::segments::Reader;
    use crate::logs::testing::write_segments;

    fn read_from(dir: &Path, offset: u64) -> String {
        let mut reader = Reader::new(dir, Stream::Stdout, offset);
        let mut out = Vec::new();
        let mut buf = [0u8; 100];
        while let ReadOutcome::Data(n) = reader.read(&mut buf).unwrap() {
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    fn lines(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn tail_spans_segment_boundaries_plain_and_compressed() {
        // Lines straddle 16-byte segments; the older ones are compressed.
        let text = lines(0..40);
        for compress in [&[][..], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13][..]] {
            let dir = tempfile::tempdir().unwrap();
            let end = write_segments(dir.path(), Stream::Stdout, 0, text.as_bytes(), 16, compress);
            for n in [1u64, 2, 3, 7, 39, 40] {
                let range = tail(dir.path(), Stream::Stdout, n).unwrap();
                assert_eq!(range.end, end);
                assert_eq!(
                    read_from(dir.path(), range.start),
                    lines(40 - n as u32..40),
                    "tail {n} with compressed {compress:?}"
                );
            }
            let all = tail(dir.path(), Stream::Stdout, 1000).unwrap();
            assert_eq!(all.start, 0);
            assert_eq!(tail(dir.path(), Stream::Stdout, 0).unwrap().start, end);
        }
    }

    #[test]
    fn an_unfinished_last_line_counts_and_rotated_away_lines_are_not_made_up() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"ne 1\nline 2\nline 3\npartial";
        write_segments(dir.path(), Stream::Stdout, 100, text, 10, &[0]);
        let range = tail(dir.path(), Stream::Stdout, 1).unwrap();
        assert_eq!(read_from(dir.path(), range.start), "partial");
        let range = tail(dir.path(), Stream::Stdout, 2).unwrap();
        assert_eq!(read_from(dir.path(), range.start), "line 3\npartial");
        // Only a fragment of line 1 is left: it starts the kept range.
        let range = tail(dir.path(), Stream::Stdout, 10).unwrap();
        assert_eq!(range.start, 100);
    }

    #[test]
    fn an_empty_stream_has_an_empty_tail() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            tail(dir.path(), Stream::Stdout, 5).unwrap(),
            TailRange { start: 0, end: 0 }
        );
    }
}
