//! Streaming a stream's bytes as an async body: a range, or a follow that
//! carries on across rotations and ends once the container has exited and
//! everything written has been delivered.
//!
//! The reading itself is blocking; each chunk is read by
//! [`crate::blocking::run`] (on the task's own thread in the agent), and a
//! follower at the end of what is written waits on the runtime
//! for its [`Follow`] to say there may be more (the log dir changed, the
//! container ended), so an idle follower holds no thread and never polls.

use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream as AsyncStream;

use super::index::Index;
use super::segments::{ReadOutcome, Reader};
use super::timestamps::Stamper;
use super::{LogError, Stream};

/// The most bytes read per chunk of a body.
pub const CHUNK: usize = 128 * 1024;

/// How often a follower at the end looks for more when nothing can wake
/// it (no inotify instance could be had).
pub const POLL: Duration = Duration::from_millis(50);

/// What a follower waits on at the end of what is written.
pub trait Follow: Send + 'static {
    /// Whether the writer has ended for good (everything it wrote is on
    /// disk by now).
    fn ended(&mut self) -> bool;

    /// Resolves when there may be more to read, or the writer may have
    /// ended, since the last call.
    fn more(&mut self) -> impl std::future::Future<Output = ()> + Send;

    /// The last chunk of a body that ended with the writer (an exit
    /// frame, see `frames`), if any.
    fn trailer(&mut self) -> Option<Bytes> {
        None
    }

    /// A look at whether the writer has already ended for good, made with
    /// the read, right before it, where the end may be on disk
    /// before [`Follow::ended`] can say so (a container's exit record,
    /// written once its output is). It gives what identifies that end, or
    /// `None`. A read made after such a look and finding nothing is then
    /// the last: once [`Follow::ended_as`] confirms the same end, the body
    /// ends without another read (decision 0052).
    fn end_probe(&self) -> Option<EndProbe> {
        None
    }

    /// Whether the writer has ended, and with the end `seen` by a probe
    /// (not a later one: a restarted container's next run).
    fn ended_as(&mut self, seen: &str) -> bool {
        let _ = seen;
        false
    }
}

/// See [`Follow::end_probe`].
pub type EndProbe = Box<dyn FnOnce() -> Option<String> + Send>;

/// What a producer has next.
#[derive(Debug)]
pub enum Step {
    Data(Bytes),
    /// Nothing for now; there may be more later.
    End,
    /// Never anything more (the asked length was delivered).
    Done,
}

/// A source of log chunks, polled where blocking work may run
/// ([`crate::blocking::run`]).
pub trait Producer: Send + 'static {
    fn produce(&mut self) -> Result<Step, LogError>;
}

/// How to read one stream.
#[derive(Debug, Clone, Default)]
pub struct CursorOptions {
    pub offset: u64,
    /// Raw log bytes to deliver at most (timestamps come on top).
    pub length: Option<u64>,
    pub timestamps: bool,
    /// Keep the index loaded (for ordering, see `merge`).
    pub index: bool,
    /// Stop before the first line that arrived after this time (Unix
    /// nanoseconds); a follower stops once the time has passed and it has
    /// read everything written.
    pub until: Option<i64>,
}

/// What a [`Cursor`] that has caught up with the writer reads at a time.
const CAUGHT_UP_READ: usize = 16 * 1024;

/// One stream being read from a logical offset.
pub struct Cursor {
    reader: Reader,
    remaining: Option<u64>,
    index: Option<Index>,
    stamper: Option<Stamper>,
    until: Option<i64>,
    /// The last read found the end of what was written, or less than it
    /// asked for: the next finds a few lines, or nothing (a follower's
    /// look after a wake-up, its last read after the end). It reads into
    /// a buffer of [`CAUGHT_UP_READ`]: a [`CHUNK`] one, zeroed, costs a
    /// `mmap` and a `munmap` (which flushes the TLB of every CPU the
    /// agent's threads ran on) for each look (decision 0057).
    caught_up: bool,
}

impl Cursor {
    pub fn new(dir: &Path, stream: Stream, options: &CursorOptions) -> Result<Cursor, LogError> {
        let index = if options.timestamps || options.index || options.until.is_some() {
            Some(Index::load(dir, stream)?)
        } else {
            None
        };
        Ok(Cursor {
            reader: Reader::new(dir, stream, options.offset),
            remaining: options.length,
            index,
            stamper: options.timestamps.then(Stamper::new),
            until: options.until,
            caught_up: false,
        })
    }

    /// The logical offset of the next byte.
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// The index, when loaded.
    pub fn index(&self) -> Option<&Index> {
        self.index.as_ref()
    }

    pub fn refresh_index(&mut self) -> Result<(), LogError> {
        match &mut self.index {
            Some(index) => index.refresh(),
            None => Ok(()),
        }
    }

    /// Reads up to `max` raw bytes (fewer at a segment's end, or where the
    /// lines after `until` begin).
    pub fn read_chunk(&mut self, max: usize) -> Result<Step, LogError> {
        let Some(until) = self.until else {
            return self.read_raw(max);
        };
        let position = self.position();
        let index = self.index.as_mut().expect("loaded for until");
        index.refresh()?;
        let mut max = max;
        if let Some(end) = index.offset_after(until) {
            if position >= end {
                return Ok(Step::Done);
            }
            max = max.min(usize::try_from(end - position).unwrap_or(usize::MAX));
        }
        match self.read_raw(max)? {
            // Whatever is written from now on arrives after `until`.
            Step::End if now_ns() > until => Ok(Step::Done),
            step => Ok(step),
        }
    }

    fn read_raw(&mut self, max: usize) -> Result<Step, LogError> {
        loop {
            let want = match self.remaining {
                Some(0) => return Ok(Step::Done),
                Some(remaining) => max.min(usize::try_from(remaining).unwrap_or(usize::MAX)),
                None => max,
            };
            let want = if self.caught_up {
                want.min(CAUGHT_UP_READ)
            } else {
                want
            };
            let mut buf = vec![0u8; want];
            match self.reader.read(&mut buf)? {
                ReadOutcome::Data(n) => {
                    self.caught_up = n < want;
                    buf.truncate(n);
                    self.remaining = self.remaining.map(|r| r - n as u64);
                    let at = self.reader.position() - n as u64;
                    let Some(stamper) = &mut self.stamper else {
                        return Ok(Step::Data(Bytes::from(buf)));
                    };
                    let index = self.index.as_mut().expect("loaded with timestamps");
                    // The entry for these bytes may have been appended
                    // since the last look.
                    let stale = match index.entries().last() {
                        Some(last) => last.offset <= at,
                        None => true,
                    };
                    if stale {
                        index.refresh()?;
                    }
                    return Ok(Step::Data(stamper.stamp(index, at, &buf)));
                }
                ReadOutcome::Skipped { from, to } => {
                    // Only a reader that fell a whole `max_files` behind
                    // sees this mid-stream; a raw byte body cannot say so.
                    tracing::warn!(
                        stream = %self.reader.stream(),
                        "log bytes {from}..{to} were rotated away before they could be read"
                    );
                    self.remaining = self.remaining.map(|r| r.saturating_sub(to - from));
                }
                ReadOutcome::End => {
                    self.caught_up = true;
                    return Ok(Step::End);
                }
            }
        }
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Producer for Cursor {
    fn produce(&mut self) -> Result<Step, LogError> {
        self.read_chunk(CHUNK)
    }
}

/// Turns a producer into a body stream. Without `follow` it ends at the end
/// of what is written; with it, it waits for more until `ended()` says the
/// container has exited and a read made after that finds nothing more.
pub fn drive<P: Producer, F: Follow>(
    producer: P,
    follow: Option<F>,
) -> impl AsyncStream<Item = io::Result<Bytes>> + Send + 'static {
    // The state: the producer, the follow, and whether the last read
    // reached the end of what was written (or none was made yet).
    futures_util::stream::unfold(Some((producer, follow, true)), move |state| async move {
        let (mut producer, mut follow, mut near_end) = state?;
        loop {
            // Asked before reading: if the container had already ended,
            // everything it wrote is on disk, so an empty read means done.
            let ended_before = follow.as_mut().is_some_and(Follow::ended);
            // The probe only where this read may find the end: not while
            // full chunks stream.
            let probe = if ended_before {
                berth_sys::launch_marks::mark("agent: a follower's last read begins");
                None
            } else if near_end {
                follow.as_ref().and_then(Follow::end_probe)
            } else {
                None
            };
            // On this task's thread (decision 0055): a read's hand-off to
            // the blocking pool and back were two wake-ups on the end's path.
            let task = crate::blocking::run(move || {
                let seen = probe.and_then(|probe| probe());
                let step = producer.produce();
                (producer, step, seen)
            });
            let (step, seen) = match task.await {
                Ok((p, step, seen)) => {
                    producer = p;
                    (step, seen)
                }
                Err(e) => return Some((Err(io::Error::other(format!("log reader: {e}"))), None)),
            };
            match step {
                Ok(Step::Data(bytes)) => {
                    let near_end = bytes.len() < CHUNK;
                    return Some((Ok(bytes), Some((producer, follow, near_end))));
                }
                Ok(Step::Done) => return None,
                Ok(Step::End) if ended_before => return end(follow),
                Ok(Step::End) => match &mut follow {
                    Some(f) => {
                        f.more().await;
                        near_end = true;
                        // The end the probe saw before this empty read,
                        // now told: nothing is left to read (decision 0052).
                        if seen.is_some_and(|seen| f.ended_as(&seen)) {
                            berth_sys::launch_marks::mark("agent: a follower needs no last read");
                            return end(follow);
                        }
                    }
                    None => return None,
                },
                Err(e) => return Some((Err(io::Error::other(e)), None)),
            }
        }
    })
}

/// What [`drive`]'s steps give: the next chunk, and the state for the one
/// after it (none once the body ends).
type Next<P, F> = Option<(io::Result<Bytes>, Option<(P, Option<F>, bool)>)>;

/// The end of a followed body: its trailer, if any.
fn end<P, F: Follow>(mut follow: Option<F>) -> Next<P, F> {
    berth_sys::launch_marks::mark("agent: the log stream ends");
    let trailer = follow.as_mut().and_then(Follow::trailer)?;
    Some((Ok(trailer), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testing::{segment_name, write_segments};
    use futures_util::StreamExt;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Ends when the flag is set; looks again every [`POLL`].
    struct Flag(Arc<AtomicBool>);

    impl Follow for Flag {
        fn ended(&mut self) -> bool {
            self.0.load(Ordering::SeqCst)
        }

        async fn more(&mut self) {
            tokio::time::sleep(POLL).await
        }
    }

    async fn collect(stream: impl AsyncStream<Item = io::Result<Bytes>>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    /// Steps handed out in order (then `End`), counting the reads.
    struct Script {
        steps: std::sync::Mutex<std::collections::VecDeque<&'static [u8]>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Producer for Arc<Script> {
        fn produce(&mut self) -> Result<Step, LogError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(match self.steps.lock().unwrap().pop_front() {
                Some(bytes) => Step::Data(Bytes::from_static(bytes)),
                None => Step::End,
            })
        }
    }

    fn script(steps: &[&'static [u8]]) -> Arc<Script> {
        Arc::new(Script {
            steps: std::sync::Mutex::new(steps.iter().copied().collect()),
            reads: Default::default(),
        })
    }

    /// A writer whose end a probe sees as `probed` before it is told, and
    /// which is told (ended) with the end in `told`.
    struct Told {
        probed: Option<&'static str>,
        told: tokio::sync::watch::Receiver<Option<&'static str>>,
        /// How many reads were preceded by a probe.
        probes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Follow for Told {
        fn ended(&mut self) -> bool {
            self.told.borrow_and_update().is_some()
        }

        async fn more(&mut self) {
            if self.told.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }

        fn trailer(&mut self) -> Option<Bytes> {
            Some(Bytes::from_static(b"|end"))
        }

        fn end_probe(&self) -> Option<EndProbe> {
            let (probed, probes) = (self.probed, self.probes.clone());
            Some(Box::new(move || {
                probes.fetch_add(1, Ordering::SeqCst);
                probed.map(str::to_string)
            }))
        }

        fn ended_as(&mut self, seen: &str) -> bool {
            *self.told.borrow_and_update() == Some(seen)
        }
    }

    type Teller = tokio::sync::watch::Sender<Option<&'static str>>;

    /// A follower of `output` whose probe saw run 1's end, once it waits
    /// at the end (two reads: the output, then nothing).
    async fn waiting_after(
        output: &'static [u8],
    ) -> (Arc<Script>, Teller, tokio::task::JoinHandle<Vec<u8>>) {
        let producer = script(&[output]);
        let (tell, told) = tokio::sync::watch::channel(None);
        let follow = Told {
            probed: Some("run 1"),
            told,
            probes: Default::default(),
        };
        let body = tokio::spawn(collect(drive(producer.clone(), Some(follow))));
        while producer.reads.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        (producer, tell, body)
    }

    #[tokio::test]
    async fn an_end_seen_before_the_last_read_needs_no_other_read() {
        let (producer, tell, body) = waiting_after(b"out").await;
        tell.send_replace(Some("run 1"));
        assert_eq!(body.await.unwrap(), b"out|end");
        assert_eq!(producer.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_later_end_than_the_probe_saw_is_read_up_to() {
        // The probe saw run 1's end; the follower is told of run 2's (a
        // restart between), whose output it must still read.
        let (producer, tell, body) = waiting_after(b"one").await;
        producer.steps.lock().unwrap().push_back(b" two");
        tell.send_replace(Some("run 2"));
        assert_eq!(body.await.unwrap(), b"one two|end");
        assert_eq!(producer.reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn full_chunks_stream_without_probes() {
        static FULL: [u8; CHUNK] = [b'x'; CHUNK];
        let producer = script(&[&FULL, &FULL, b"tail"]);
        let (tell, told) = tokio::sync::watch::channel(None);
        let probes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let follow = Told {
            probed: None,
            told,
            probes: probes.clone(),
        };
        let body = tokio::spawn(collect(drive(producer.clone(), Some(follow))));
        // Four reads: two full chunks, the tail, nothing.
        while producer.reads.load(Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
        tell.send_replace(Some("run 1"));
        assert_eq!(body.await.unwrap().len(), 2 * CHUNK + b"tail|end".len());
        // Before the first read and the one after the short tail only; the
        // read after the tell is the last, unprobed.
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_range_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        write_segments(dir.path(), Stream::Stdout, 0, b"0123456789abcdef", 4, &[1]);
        let options = CursorOptions {
            offset: 3,
            length: Some(9),
            ..Default::default()
        };
        let cursor = Cursor::new(dir.path(), Stream::Stdout, &options).unwrap();
        assert_eq!(collect(drive(cursor, None::<Flag>)).await, b"3456789ab");
    }

    #[test]
    fn a_cursor_that_caught_up_looks_with_a_small_buffer_then_reads_full_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join(segment_name(Stream::Stdout, 0));
        std::fs::write(&segment, vec![b'a'; 300 * 1024]).unwrap();
        let mut cursor =
            Cursor::new(dir.path(), Stream::Stdout, &CursorOptions::default()).unwrap();
        let mut sizes = || match cursor.produce().unwrap() {
            Step::Data(bytes) => bytes.len(),
            Step::End => 0,
            Step::Done => usize::MAX,
        };
        // From the start: full chunks, then the rest, then the end.
        let read: Vec<usize> = (0..4).map(|_| sizes()).collect();
        assert_eq!(read, [CHUNK, CHUNK, 300 * 1024 - 2 * CHUNK, 0]);
        // Caught up: a small look first; a full one tells it the writer is
        // ahead again, and the next asks for a whole chunk.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap()
            .write_all(&vec![b'b'; 200 * 1024])
            .unwrap();
        let read: Vec<usize> = (0..4).map(|_| sizes()).collect();
        assert_eq!(
            read,
            [
                CAUGHT_UP_READ,
                CHUNK,
                200 * 1024 - CAUGHT_UP_READ - CHUNK,
                0
            ]
        );
    }

    #[tokio::test]
    async fn follow_carries_on_across_rotations_and_ends_after_exit() {
        let dir = tempfile::tempdir().unwrap();
        let ended = Arc::new(AtomicBool::new(false));
        let cursor = Cursor::new(dir.path(), Stream::Stdout, &CursorOptions::default()).unwrap();
        let flag = ended.clone();
        let follower = tokio::spawn(collect(drive(cursor, Some(Flag(flag)))));
        // A writer rotating every 10 bytes, deleting past 2 files.
        let mut expected = Vec::new();
        let mut start = 0u64;
        let mut segments: Vec<std::path::PathBuf> = Vec::new();
        for round in 0..8 {
            let path = dir.path().join(segment_name(Stream::Stdout, start));
            let mut file = std::fs::File::create(&path).unwrap();
            for half in 0..2 {
                let piece = format!("r{round}h{half}...\n");
                assert_eq!(piece.len(), 8);
                file.write_all(&piece.as_bytes()[..5]).unwrap();
                expected.extend_from_slice(&piece.as_bytes()[..5]);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            start += 10;
            segments.push(path);
            if segments.len() > 2 {
                std::fs::remove_file(segments.remove(0)).unwrap();
            }
        }
        ended.store(true, Ordering::SeqCst);
        let got = tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("the follower ends by itself")
            .unwrap();
        assert_eq!(got, expected);
    }
}
