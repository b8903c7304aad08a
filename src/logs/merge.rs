//! `stream=all`: stdout and stderr interleaved in arrival order.
//!
//! Each stream's index cuts it into chunks with arrival times; the merge
//! always delivers the pending chunk that arrived first, and never reads
//! past a chunk's end in one go. The shim indexes the first line start of
//! every chunk it reads from a pipe, so lines come in the order they
//! arrived (lines read in one chunk of one stream arrived together).

use std::path::Path;

use bytes::Bytes;
use chrono::Utc;

use super::follow::{Cursor, CursorOptions, Producer, Step, CHUNK};
use super::frames::frame;
use super::skip::skip_lines;
use super::{LogError, Stream};

/// Both streams of a container, read in arrival order.
pub struct Merge {
    /// stdout, stderr.
    cursors: [Cursor; 2],
    /// Each chunk in a frame naming its stream (see [`super::frames`]).
    framed: bool,
    /// Lines of the merged output still to drop before anything is
    /// delivered (`tail` over both streams).
    skip: u64,
    /// Streams found ended for good by the last look.
    done: usize,
}

impl Merge {
    /// Reads stdout from `offsets[0]` and stderr from `offsets[1]`.
    /// Stops before the lines that arrived after `until` (Unix ns).
    pub fn new(
        dir: &Path,
        offsets: [u64; 2],
        timestamps: bool,
        until: Option<i64>,
    ) -> Result<Merge, LogError> {
        let cursor = |stream: Stream, offset: u64| {
            Cursor::new(
                dir,
                stream,
                &CursorOptions {
                    offset,
                    length: None,
                    timestamps,
                    index: true,
                    until,
                },
            )
        };
        Ok(Merge {
            cursors: [
                cursor(Stream::Stdout, offsets[0])?,
                cursor(Stream::Stderr, offsets[1])?,
            ],
            framed: false,
            skip: 0,
            done: 0,
        })
    }

    /// Puts every chunk in a frame naming its stream.
    pub fn framed(mut self, framed: bool) -> Merge {
        self.framed = framed;
        self
    }

    /// Drops the first `lines` lines of the merged output.
    pub fn skipping(mut self, lines: u64) -> Merge {
        self.skip = lines;
        self
    }
}

/// The order in which to try the streams, given when each one's next byte
/// arrived: earliest first, stdout first on a tie.
pub fn order(times: [i64; 2]) -> [usize; 2] {
    if times[1] < times[0] {
        [1, 0]
    } else {
        [0, 1]
    }
}

impl Producer for Merge {
    fn produce(&mut self) -> Result<Step, LogError> {
        loop {
            match self.next_chunk()? {
                Some((stream, bytes)) => {
                    let Some(bytes) = skip_lines(bytes, &mut self.skip) else {
                        continue;
                    };
                    if !self.framed {
                        return Ok(Step::Data(bytes));
                    }
                    return Ok(Step::Data(frame(stream, &bytes).into()));
                }
                None if self.done == 2 => return Ok(Step::Done),
                None => return Ok(Step::End),
            }
        }
    }
}

impl Merge {
    /// The chunk that arrived first of those pending, and its stream;
    /// `None` when neither stream has one now (`done` counts the streams
    /// that have ended for good).
    fn next_chunk(&mut self) -> Result<Option<(Stream, Bytes)>, LogError> {
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let mut times = [0i64; 2];
        for (cursor, time) in self.cursors.iter_mut().zip(&mut times) {
            cursor.refresh_index()?;
            let index = cursor.index().expect("merge loads indexes");
            *time = index.time_at_or_nearest(cursor.position(), now);
        }
        // A stream with nothing written yet gives way to the other one:
        // whatever it writes later arrives later.
        self.done = 0;
        for i in order(times) {
            let cursor = &mut self.cursors[i];
            let index = cursor.index().expect("merge loads indexes");
            let max = match index.boundary_after(cursor.position()) {
                Some(boundary) => CHUNK.min((boundary - cursor.position()) as usize),
                None => CHUNK,
            };
            match cursor.read_chunk(max)? {
                Step::Data(bytes) => return Ok(Some((Stream::ALL[i], bytes))),
                Step::End => {}
                Step::Done => self.done += 1,
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::index;
    use crate::logs::testing::write_segments;

    fn drain(merge: &mut Merge) -> String {
        let mut out = Vec::new();
        while let Step::Data(bytes) = merge.produce().unwrap() {
            out.extend_from_slice(&bytes);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ties_go_to_stdout() {
        assert_eq!(order([5, 5]), [0, 1]);
        assert_eq!(order([6, 5]), [1, 0]);
        assert_eq!(order([4, 5]), [0, 1]);
    }

    #[test]
    fn chunks_interleave_by_arrival_time_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        // stdout: "o1\n" at t=10, "o2\no3\n" at t=30, "o4\n" at t=50.
        // stderr: "e1\n" at t=20, "e2\n" at t=40, "e3\n" at t=60.
        write_segments(dir.path(), Stream::Stdout, 0, b"o1\no2\no3\no4\n", 4, &[0]);
        write_segments(dir.path(), Stream::Stderr, 0, b"e1\ne2\ne3\n", 2, &[]);
        std::fs::write(
            index::path(dir.path(), Stream::Stdout),
            "0 10\n3 30\n9 50\n",
        )
        .unwrap();
        std::fs::write(
            index::path(dir.path(), Stream::Stderr),
            "0 20\n3 40\n6 60\n",
        )
        .unwrap();
        let mut merge = Merge::new(dir.path(), [0, 0], false, None).unwrap();
        assert_eq!(drain(&mut merge), "o1\ne1\no2\no3\ne2\no4\ne3\n");

        // From later offsets (as `since` gives them), with timestamps.
        let mut merge = Merge::new(dir.path(), [9, 3], true, None).unwrap();
        assert_eq!(
            drain(&mut merge),
            "1970-01-01T00:00:00.000000040Z e2\n\
             1970-01-01T00:00:00.000000050Z o4\n\
             1970-01-01T00:00:00.000000060Z e3\n"
        );
    }

    #[test]
    fn one_silent_stream_does_not_hold_the_other() {
        let dir = tempfile::tempdir().unwrap();
        write_segments(dir.path(), Stream::Stderr, 0, b"only\n", 100, &[]);
        std::fs::write(index::path(dir.path(), Stream::Stderr), "0 20\n").unwrap();
        let mut merge = Merge::new(dir.path(), [0, 0], false, None).unwrap();
        assert_eq!(drain(&mut merge), "only\n");
        assert!(matches!(merge.produce().unwrap(), Step::End));
    }
}
