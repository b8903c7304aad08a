//! `stream=all`: stdout and stderr interleaved in arrival order.
//!
//! Each stream's index cuts it into chunks with arrival times; the merge
//! always delivers the pending chunk that arrived first, and never reads
//! past a chunk's end in one go, so the order is right to the precision of
//! a chunk (what the shim read from the pipe within 10 ms).

use std::path::Path;

use chrono::Utc;

use super::follow::{Cursor, CursorOptions, Producer, Step, CHUNK};
use super::{LogError, Stream};

/// Both streams of a container, read in arrival order.
pub struct Merge {
    /// stdout, stderr.
    cursors: [Cursor; 2],
}

impl Merge {
    /// Reads stdout from `offsets[0]` and stderr from `offsets[1]`.
    pub fn new(dir: &Path, offsets: [u64; 2], timestamps: bool) -> Result<Merge, LogError> {
        let cursor = |stream: Stream, offset: u64| {
            Cursor::new(
                dir,
                stream,
                &CursorOptions {
                    offset,
                    length: None,
                    timestamps,
                    index: true,
                },
            )
        };
        Ok(Merge {
            cursors: [
                cursor(Stream::Stdout, offsets[0])?,
                cursor(Stream::Stderr, offsets[1])?,
            ],
        })
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
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let mut times = [0i64; 2];
        for (cursor, time) in self.cursors.iter_mut().zip(&mut times) {
            cursor.refresh_index()?;
            let index = cursor.index().expect("merge loads indexes");
            *time = index.time_at_or_nearest(cursor.position(), now);
        }
        // A stream with nothing written yet gives way to the other one:
        // whatever it writes later arrives later.
        let mut done = 0;
        for i in order(times) {
            let cursor = &mut self.cursors[i];
            let index = cursor.index().expect("merge loads indexes");
            let max = match index.boundary_after(cursor.position()) {
                Some(boundary) => CHUNK.min((boundary - cursor.position()) as usize),
                None => CHUNK,
            };
            match cursor.read_chunk(max)? {
                Step::Data(bytes) => return Ok(Step::Data(bytes)),
                Step::End => {}
                Step::Done => done += 1,
            }
        }
        Ok(if done == 2 { Step::Done } else { Step::End })
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
        let mut merge = Merge::new(dir.path(), [0, 0], false).unwrap();
        assert_eq!(drain(&mut merge), "o1\ne1\no2\no3\ne2\no4\ne3\n");

        // From later offsets (as `since` gives them), with timestamps.
        let mut merge = Merge::new(dir.path(), [9, 3], true).unwrap();
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
        let mut merge = Merge::new(dir.path(), [0, 0], false).unwrap();
        assert_eq!(drain(&mut merge), "only\n");
        assert!(matches!(merge.produce().unwrap(), Step::End));
    }
}
