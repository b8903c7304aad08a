//! `format=jsonl`: a container's output as one JSON object per line, for
//! log shippers:
//!
//! ```json
//! {"time":"2026-12-04T09:00:00.123456789Z","stream":"stdout","log":"hello\n","id":"web","name":"web","labels":{"app":"shop"}}
//! ```
//!
//! `log` is the line as written, its newline included (as Docker's
//! json-file driver keeps it); a line without one is cut at
//! [`MAX_LINE`] bytes, or was the last, unfinished line when the body
//! caught up with the writer (its rest then comes in the next object, with
//! no newline lost or added). Bytes that are not UTF-8 are replaced.
//!
//! It wraps a producer of timestamped bytes (`timestamps=true`: every line
//! start is prefixed by its arrival time and a space): one stream's
//! [`super::follow::Cursor`], or the framed [`super::merge::Merge`] of
//! both (each chunk one frame naming its stream).

use bytes::Bytes;

use super::follow::{Producer, Step};
use super::frames::HEADER_LEN;
use super::{LogError, Stream};

/// The longest `log` of one object: a longer line is split (Docker cuts
/// at 16 KiB too).
pub const MAX_LINE: usize = 16 * 1024;

/// Where the timestamped bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One stream's bytes.
    One(Stream),
    /// Frames naming their stream.
    Framed,
}

/// The line of one stream being put together.
#[derive(Debug, Default)]
struct Pending {
    line: Vec<u8>,
    time: String,
    /// The next byte starts a line, and so a timestamp.
    continued: bool,
}

/// The JSON lines of a timestamped producer.
pub struct Jsonl<P> {
    inner: P,
    source: Source,
    /// `,"id":...,"name":...,"labels":{...}}`: every object's end.
    tail: String,
    pending: [Pending; 2],
    done: bool,
}

impl<P: Producer> Jsonl<P> {
    /// `id` and `labels` go in every object (`name` is the id).
    pub fn new(
        inner: P,
        source: Source,
        id: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Jsonl<P> {
        let id = serde_json::to_string(id).expect("a string serializes");
        let labels = serde_json::to_string(labels).expect("labels serialize");
        Jsonl {
            inner,
            source,
            tail: format!(",\"id\":{id},\"name\":{id},\"labels\":{labels}}}\n"),
            pending: Default::default(),
            done: false,
        }
    }

    fn emit(&self, out: &mut Vec<u8>, stream: Stream) {
        let pending = &self.pending[stream as usize];
        out.extend_from_slice(b"{\"time\":");
        out.extend_from_slice(
            serde_json::to_string(&pending.time)
                .expect("a string serializes")
                .as_bytes(),
        );
        out.extend_from_slice(b",\"stream\":\"");
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(b"\",\"log\":");
        out.extend_from_slice(
            serde_json::to_string(&String::from_utf8_lossy(&pending.line))
                .expect("a string serializes")
                .as_bytes(),
        );
        out.extend_from_slice(self.tail.as_bytes());
    }

    /// Turns timestamped bytes of `stream` into objects for its complete
    /// lines; keeps an unfinished one.
    fn feed(&mut self, out: &mut Vec<u8>, stream: Stream, mut data: &[u8]) {
        let i = stream as usize;
        while !data.is_empty() {
            if self.pending[i].line.is_empty() && !self.pending[i].continued {
                // The stamper writes a whole prefix into the chunk that
                // holds the line's first byte.
                if let Some(space) = data.iter().position(|&b| b == b' ') {
                    self.pending[i].time = String::from_utf8_lossy(&data[..space]).into_owned();
                    data = &data[space + 1..];
                }
                self.pending[i].continued = true;
                if data.is_empty() {
                    break;
                }
            }
            let room = MAX_LINE - self.pending[i].line.len();
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(end) => {
                    self.pending[i].line.extend_from_slice(&data[..=end]);
                    data = &data[end + 1..];
                    self.emit(out, stream);
                    self.pending[i].line.clear();
                    self.pending[i].continued = false;
                }
                None => {
                    let take = data.len().min(room);
                    self.pending[i].line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.pending[i].line.len() == MAX_LINE {
                        self.emit(out, stream);
                        self.pending[i].line.clear();
                    }
                }
            }
        }
    }

    /// Objects for the unfinished lines (the body caught up with the
    /// writer, or ends).
    fn flush(&mut self, out: &mut Vec<u8>) {
        for stream in Stream::ALL {
            if !self.pending[stream as usize].line.is_empty() {
                self.emit(out, stream);
                self.pending[stream as usize].line.clear();
            }
        }
    }
}

impl<P: Producer> Producer for Jsonl<P> {
    fn produce(&mut self) -> Result<Step, LogError> {
        if self.done {
            return Ok(Step::Done);
        }
        loop {
            let step = self.inner.produce()?;
            let mut out = Vec::new();
            match step {
                Step::Data(bytes) => {
                    match self.source {
                        Source::One(stream) => self.feed(&mut out, stream, &bytes),
                        Source::Framed => {
                            // One frame per chunk (see `merge`).
                            let stream = match bytes.first() {
                                Some(1) => Stream::Stdout,
                                Some(2) => Stream::Stderr,
                                _ => continue,
                            };
                            let data = bytes.get(HEADER_LEN..).unwrap_or_default();
                            self.feed(&mut out, stream, data);
                        }
                    }
                    if out.is_empty() {
                        continue;
                    }
                    return Ok(Step::Data(Bytes::from(out)));
                }
                Step::End => {
                    self.flush(&mut out);
                    return Ok(match out.is_empty() {
                        true => Step::End,
                        false => Step::Data(Bytes::from(out)),
                    });
                }
                Step::Done => {
                    self.flush(&mut out);
                    self.done = true;
                    return Ok(match out.is_empty() {
                        true => Step::Done,
                        false => Step::Data(Bytes::from(out)),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::frames::frame;
    use std::collections::VecDeque;

    struct Steps(VecDeque<Step>);

    impl Producer for Steps {
        fn produce(&mut self) -> Result<Step, LogError> {
            Ok(self.0.pop_front().unwrap_or(Step::Done))
        }
    }

    fn data(bytes: &[u8]) -> Step {
        Step::Data(Bytes::copy_from_slice(bytes))
    }

    fn drain(mut producer: impl Producer) -> Vec<serde_json::Value> {
        let mut text = Vec::new();
        loop {
            match producer.produce().unwrap() {
                Step::Data(bytes) => text.extend_from_slice(&bytes),
                Step::End => {}
                Step::Done => break,
            }
        }
        String::from_utf8(text)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_split_across_chunks_and_caught_up_partials() {
        let labels = [("app".to_string(), "shop".to_string())].into();
        let steps = Steps(
            [
                data(b"T1 hel"),
                data(b"lo\nT2 wor"),
                Step::End,
                data(b"ld\n"),
                data(b"T3 \xff\n"),
            ]
            .into(),
        );
        let objects = drain(Jsonl::new(
            steps,
            Source::One(Stream::Stderr),
            "c1",
            &labels,
        ));
        let logs: Vec<_> = objects
            .iter()
            .map(|o| (o["time"].as_str().unwrap(), o["log"].as_str().unwrap()))
            .collect();
        assert_eq!(
            logs,
            [
                ("T1", "hello\n"),
                ("T2", "wor"),
                ("T2", "ld\n"),
                ("T3", "\u{fffd}\n")
            ]
        );
        for object in &objects {
            assert_eq!(object["stream"], "stderr");
            assert_eq!(object["id"], "c1");
            assert_eq!(object["name"], "c1");
            assert_eq!(object["labels"]["app"], "shop");
        }
    }

    #[test]
    fn frames_name_the_stream_and_long_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut stamped = b"T9 ".to_vec();
        stamped.extend_from_slice(&long);
        stamped.push(b'\n');
        let steps = Steps(
            [
                data(&frame(Stream::Stdout, b"T1 a\n")),
                data(&frame(Stream::Stderr, b"T2 b\n")),
                data(&frame(Stream::Stdout, &stamped)),
            ]
            .into(),
        );
        let objects = drain(Jsonl::new(steps, Source::Framed, "c", &Default::default()));
        assert_eq!(objects.len(), 4);
        assert_eq!(objects[0]["stream"], "stdout");
        assert_eq!(objects[1]["stream"], "stderr");
        assert_eq!(objects[1]["log"], "b\n");
        assert_eq!(objects[2]["log"].as_str().unwrap().len(), MAX_LINE);
        assert_eq!(objects[3]["log"].as_str().unwrap(), "x".repeat(10) + "\n");
        assert_eq!(objects[3]["time"], "T9");
    }
}
