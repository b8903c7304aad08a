//! The bounded ring of recent events and its file (decision 0031):
//! `<work_dir>/events/events.jsonl`, one event per line, appended with one
//! `write` per event (no fsync: an agent killed at any point loses nothing
//! the kernel has; a torn last line after a power loss is skipped), and
//! rewritten (temp file + rename) with only the ring's events once it
//! holds twice as many lines.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Event, EventsError};

/// The events file's name in its dir.
pub const FILE: &str = "events.jsonl";

pub struct Ring {
    events: VecDeque<Arc<Event>>,
    capacity: usize,
    /// The seq the next event gets.
    next: u64,
    /// Whether an event ever left the ring (a replay from before the
    /// oldest kept one is then incomplete).
    trimmed: bool,
    file: Option<Backing>,
}

struct Backing {
    path: PathBuf,
    file: File,
    /// Lines in the file, compacted past twice the capacity.
    lines: usize,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EventsError + '_ {
    move |source| EventsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Ring {
    /// A ring that is not kept on disk.
    pub fn in_memory(capacity: usize) -> Ring {
        Ring {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            next: 1,
            trimmed: false,
            file: None,
        }
    }

    /// Loads the ring from `dir` (made 0700 if missing) and opens its file
    /// for appending.
    pub fn open(dir: &Path, capacity: usize) -> Result<Ring, EventsError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
        let path = dir.join(FILE);
        let mut ring = Ring::in_memory(capacity);
        let mut lines = 0;
        // A torn last line (no newline) is rewritten away before appending.
        let mut torn = false;
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line.map_err(io_error(&path))?;
                    lines += 1;
                    torn = false;
                    // A torn or foreign line is skipped, not fatal.
                    match serde_json::from_slice::<Event>(&line) {
                        Ok(event) if event.seq >= ring.next => {
                            ring.next = event.seq + 1;
                            ring.keep(Arc::new(event));
                        }
                        Ok(_) => {}
                        Err(e) if !line.is_empty() => {
                            torn = true;
                            tracing::warn!(path = %path.display(), "skipped an unreadable event: {e}")
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
        // Events before the oldest kept one are gone for good.
        if ring.events.front().is_some_and(|e| e.seq > 1) {
            ring.trimmed = true;
        }
        let file = append(&path)?;
        ring.file = Some(Backing { path, file, lines });
        if torn || lines > ring.capacity {
            ring.compact()?;
        }
        Ok(ring)
    }

    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn oldest_seq(&self) -> Option<u64> {
        self.events.front().map(|e| e.seq)
    }

    pub fn trimmed(&self) -> bool {
        self.trimmed
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Event>> {
        self.events.iter()
    }

    /// Adds an event (numbered [`Ring::next_seq`]) and appends it to the
    /// file; a failed write is logged, the event is kept in memory.
    pub fn push(&mut self, event: Arc<Event>) {
        self.next = event.seq + 1;
        if let Some(backing) = &mut self.file {
            match backing.file.write_all(event.line()) {
                Ok(()) => backing.lines += 1,
                Err(e) => tracing::error!(path = %backing.path.display(), "append event: {e}"),
            }
        }
        self.keep(event);
        let over = self
            .file
            .as_ref()
            .is_some_and(|b| b.lines > 2 * self.capacity);
        if over {
            if let Err(e) = self.compact() {
                tracing::error!("compact events: {e}");
            }
        }
    }

    fn keep(&mut self, event: Arc<Event>) {
        self.events.push_back(event);
        while self.events.len() > self.capacity {
            self.events.pop_front();
            self.trimmed = true;
        }
    }

    /// Rewrites the file with only the ring's events.
    fn compact(&mut self) -> Result<(), EventsError> {
        let Some(backing) = &mut self.file else {
            return Ok(());
        };
        let mut text = Vec::new();
        for event in &self.events {
            text.extend_from_slice(event.line());
        }
        crate::store::write_atomic(&backing.path, &text, crate::store::Durability::CrashSafe)
            .map_err(|e| EventsError::Io {
                path: backing.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        backing.file = append(&backing.path)?;
        backing.lines = self.events.len();
        Ok(())
    }
}

fn append(path: &Path) -> Result<File, EventsError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Actor, Kind};

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            seq,
            epoch: 1,
            time: "2026-12-04T00:00:00.000000000Z".into(),
            kind: Kind::Container,
            action: "start".into(),
            actor: Actor::default(),
            attributes: Default::default(),
            line: Default::default(),
        })
    }

    #[test]
    fn ring_survives_reopen_and_compacts() {
        let dir = std::env::temp_dir().join(format!("berth-events-ring-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut ring = Ring::open(&dir, 3).unwrap();
        for seq in 1..=7 {
            let next = ring.next_seq();
            assert_eq!(next, seq);
            ring.push(event(next));
        }
        // 7 lines > 2 x 3: compacted to the ring's 3.
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        // A torn last line is skipped.
        let mut file = append(&dir.join(FILE)).unwrap();
        file.write_all(b"{\"seq\":9").unwrap();
        let reopened = Ring::open(&dir, 3).unwrap();
        let seqs: Vec<u64> = reopened.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![5, 6, 7]);
        assert_eq!(reopened.next_seq(), 8);
        assert!(reopened.trimmed());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
