//! The records' journal: every save of a container's work-dir record is
//! also appended to one file, and a durable save waits for a single flush
//! that covers every append made before it, whoever made them (a group
//! commit, decision 0059). After a power loss the journal, not the record
//! files, says what each container's last record was.
//!
//! ```text
//! <work_dir>/records.journal   frames, then zeros:
//!   magic "BRJ1" | kind u8 (1 saved, 2 removed) | 0 0 0 | length u32 LE | crc32 u32 LE
//!   payload: id length u16 LE | id | the record's JSON (saved only)
//! ```
//!
//! The CRC covers the header's kind, padding and length and the payload;
//! a reader takes frames up to the first that is not whole and intact
//! (zeros, a torn write) and no further. The file is written ahead with
//! zeros, so an append overwrites allocated blocks and its flush
//! (`fdatasync`) writes that data and nothing of the file's metadata. The
//! journal is rewritten, with each container's last frame only, when the
//! agent opens it and when it grows past [`COMPACT_AT`]: the rewrite is a
//! new file, synced, renamed over the old one, so nothing beyond the last
//! frame is ever stale.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use berth_isolator::ContainerId;

use super::{io_error, StoreError};

/// The journal's file name in the work dir.
pub const JOURNAL_FILE: &str = "records.journal";
/// Where a rewrite is made before it replaces the journal.
const REWRITE_FILE: &str = "records.journal.new";
const MAGIC: [u8; 4] = *b"BRJ1";
const HEADER: usize = 16;
/// A frame's payload at most: far above any record.
const MAX_PAYLOAD: usize = 16 << 20;
/// Zeros written ahead of the appends at a time.
const ZERO_AHEAD: u64 = 1 << 20;
/// A journal that would grow past this is rewritten first.
pub const COMPACT_AT: u64 = 32 << 20;

/// What a frame says of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Its record, as saved.
    Saved = 1,
    /// It was removed.
    Removed = 2,
}

/// A container's last entry in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Its last record's JSON.
    Saved(Vec<u8>),
    /// It was removed after it.
    Removed,
}

/// Where a container's last saved frame lies in the current file.
#[derive(Debug, Clone, Copy)]
struct FrameAt {
    offset: u64,
    len: u64,
}

/// The file being appended to.
struct Appending {
    file: Arc<File>,
    /// Counts the rewrites: a flush of an older file says nothing of this one.
    generation: u64,
    /// Where the next frame goes.
    end: u64,
    /// The file's length: zeros from `end` up to it.
    zeroed: u64,
    /// Each container's last saved frame.
    saved: HashMap<ContainerId, FrameAt>,
    /// Containers removed since the last rewrite.
    removed: Vec<ContainerId>,
}

/// How far the journal is known to be on disk.
#[derive(Default)]
struct Synced {
    generation: u64,
    offset: u64,
    /// A waiter is flushing: the others wait for it.
    flushing: bool,
    /// A flush failed: what was written since may be lost, and no later
    /// flush can promise otherwise (Linux reports a writeback error once).
    failed: Option<String>,
}

impl Appending {
    /// Appending to a file just rewritten, the `generation`th.
    fn new(rewritten: Rewritten, generation: u64) -> Appending {
        Appending {
            file: Arc::new(rewritten.file),
            generation,
            end: rewritten.end,
            zeroed: rewritten.zeroed,
            saved: rewritten.saved,
            removed: rewritten.removed,
        }
    }
}

/// Where the journal and the record files are.
struct Files {
    /// The journal.
    path: PathBuf,
    work_dir: PathBuf,
    records_dir: PathBuf,
}

/// The records' journal of a work dir (see the module's doc).
pub struct Journal {
    files: Files,
    appending: Mutex<Appending>,
    synced: Mutex<Synced>,
    flushed: Condvar,
    flushes: AtomicU64,
    /// `fdatasync`, but in tests.
    flush: fn(&File) -> io::Result<()>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.files.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Journal {
    /// Opens the journal of `work_dir` (made if missing), whose record
    /// files are in `records_dir`, and rewrites it with each container's
    /// last frame: a removed container's frames go once its record file is
    /// gone for good (unlinked, `records_dir` synced).
    pub fn open(work_dir: &Path, records_dir: &Path) -> Result<Journal, StoreError> {
        Journal::open_flushing_with(work_dir, records_dir, File::sync_data)
    }

    /// [`Journal::open`], its appends flushed by `flush` (the tests' seam
    /// for a failing disk).
    fn open_flushing_with(
        work_dir: &Path,
        records_dir: &Path,
        flush: fn(&File) -> io::Result<()>,
    ) -> Result<Journal, StoreError> {
        let path = work_dir.join(JOURNAL_FILE);
        let last = match fs::read(&path) {
            Ok(bytes) => last_entries(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let mut frames = Vec::new();
        let mut removed = Vec::new();
        for (id, entry) in last {
            match entry {
                Entry::Saved(record) => {
                    let frame = encode(Kind::Saved, &id, &record);
                    frames.push((id, frame));
                }
                Entry::Removed => removed.push(id),
            }
        }
        let files = Files {
            path,
            work_dir: work_dir.to_path_buf(),
            records_dir: records_dir.to_path_buf(),
        };
        let appending = Appending::new(files.rewrite(frames, removed)?, 1);
        let synced = Synced {
            generation: appending.generation,
            offset: appending.end,
            ..Synced::default()
        };
        Ok(Journal {
            files,
            appending: Mutex::new(appending),
            synced: Mutex::new(synced),
            flushed: Condvar::new(),
            flushes: AtomicU64::new(0),
            flush,
        })
    }

    /// How many flushes the journal has made: fewer than the durable saves
    /// when saves come together.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Each container's last entry, as the journal on disk says now.
    pub fn entries(&self) -> Result<BTreeMap<ContainerId, Entry>, StoreError> {
        let bytes = fs::read(&self.files.path).map_err(io_error("read", &self.files.path))?;
        Ok(last_entries(&bytes))
    }

    /// Appends `record` (the JSON of `id`'s record) without waiting for it
    /// to reach the disk: [`Journal::wait_durable`] does.
    pub fn append_saved(&self, id: &ContainerId, record: &[u8]) -> Result<(), StoreError> {
        self.append(Kind::Saved, id, record)
    }

    /// Appends that `id` was removed (not waited for: a power loss may
    /// bring the container back, as it may its record file's unlink).
    pub fn append_removed(&self, id: &ContainerId) -> Result<(), StoreError> {
        self.append(Kind::Removed, id, &[])
    }

    fn append(&self, kind: Kind, id: &ContainerId, record: &[u8]) -> Result<(), StoreError> {
        let frame = encode(kind, id, record);
        let len = frame.len() as u64;
        let mut appending = lock(&self.appending);
        if appending.end + len > COMPACT_AT {
            let frames = self.last_frames(&appending)?;
            let removed = std::mem::take(&mut appending.removed);
            match self.files.rewrite(frames, removed.clone()) {
                Ok(rewritten) => {
                    *appending = Appending::new(rewritten, appending.generation + 1);
                    // All the new file holds is on disk: any waiter on the
                    // old one is done (its last frame was copied, or
                    // superseded by one that was).
                    let mut synced = lock(&self.synced);
                    synced.generation = appending.generation;
                    synced.offset = appending.end;
                    self.flushed.notify_all();
                }
                Err(e) => {
                    appending.removed = removed;
                    return Err(e);
                }
            }
        }
        if appending.end + len > appending.zeroed {
            // Zeros ahead, written now: the flushes after them need no
            // metadata of the file's.
            let to = appending.end + len + ZERO_AHEAD;
            write_zeros(&appending.file, appending.zeroed, to)
                .map_err(io_error("extend", &self.files.path))?;
            appending.zeroed = to;
        }
        let offset = appending.end;
        if let Err(e) = appending.file.write_all_at(&frame, offset) {
            // Whatever part was written goes back to zeros, best effort; the
            // next frame overwrites it either way.
            let _ = write_zeros(&appending.file, offset, offset + len);
            return Err(io_error("append to", &self.files.path)(e));
        }
        appending.end += len;
        match kind {
            Kind::Saved => {
                appending.saved.insert(id.clone(), FrameAt { offset, len });
                // A container made again under a removed one's id: its
                // record file is no leftover.
                appending.removed.retain(|removed| removed != id);
            }
            Kind::Removed => {
                appending.saved.remove(id);
                appending.removed.push(id.clone());
            }
        }
        Ok(())
    }

    /// Waits until `id`'s last saved frame is on disk: one flush for every
    /// waiter whose frame it covers. Nothing to wait for when `id` has none
    /// (removed, or saved only by an agent before the journal).
    pub fn wait_durable(&self, id: &ContainerId) -> Result<(), StoreError> {
        let target = {
            let appending = lock(&self.appending);
            match appending.saved.get(id) {
                Some(frame) => (appending.generation, frame.offset + frame.len),
                None => return Ok(()),
            }
        };
        let mut synced = lock(&self.synced);
        loop {
            if (synced.generation, synced.offset) >= target {
                return Ok(());
            }
            if let Some(failed) = &synced.failed {
                return Err(io_error("flush", &self.files.path)(io::Error::other(
                    failed.clone(),
                )));
            }
            if synced.flushing {
                synced = self
                    .flushed
                    .wait(synced)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // This waiter flushes for everyone: whatever is appended by now.
            synced.flushing = true;
            drop(synced);
            let (file, generation, end) = {
                let appending = lock(&self.appending);
                (appending.file.clone(), appending.generation, appending.end)
            };
            let flushed = (self.flush)(&file);
            self.flushes.fetch_add(1, Ordering::Relaxed);
            synced = lock(&self.synced);
            synced.flushing = false;
            match flushed {
                Ok(()) if (generation, end) > (synced.generation, synced.offset) => {
                    synced.generation = generation;
                    synced.offset = end;
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(journal = %self.files.path.display(), "flush: {e}; durable saves fail from now on");
                    synced.failed = Some(e.to_string());
                }
            }
            self.flushed.notify_all();
        }
    }

    /// The frames a rewrite keeps: each container's last saved one, read
    /// back from the file.
    fn last_frames(
        &self,
        appending: &Appending,
    ) -> Result<Vec<(ContainerId, Vec<u8>)>, StoreError> {
        let mut frames: Vec<_> = appending.saved.iter().collect();
        frames.sort_by_key(|(_, at)| at.offset);
        frames
            .into_iter()
            .map(|(id, at)| {
                let mut frame = vec![0; at.len as usize];
                appending
                    .file
                    .read_exact_at(&mut frame, at.offset)
                    .map_err(io_error("read", &self.files.path))?;
                Ok((id.clone(), frame))
            })
            .collect()
    }
}

impl Files {
    /// Writes a new journal of `frames` (each container's last saved frame)
    /// and zeros, synced and renamed into place: all it holds is durable.
    /// The `removed` containers' frames are left out once their record
    /// files are unlinked for good; a record file that would not go keeps
    /// its container's removal in the journal.
    fn rewrite(
        &self,
        frames: Vec<(ContainerId, Vec<u8>)>,
        removed: Vec<ContainerId>,
    ) -> Result<Rewritten, StoreError> {
        let mut removed_kept = Vec::new();
        if !removed.is_empty() {
            for id in removed {
                let record = self.records_dir.join(format!("{id}.json"));
                match fs::remove_file(&record) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(file = %record.display(), "remove a removed container's record: {e}");
                        removed_kept.push(id);
                    }
                }
            }
            sync_dir(&self.records_dir)?;
        }
        let mut bytes = Vec::new();
        let mut saved = HashMap::with_capacity(frames.len());
        for (id, frame) in frames {
            let at = FrameAt {
                offset: bytes.len() as u64,
                len: frame.len() as u64,
            };
            bytes.extend_from_slice(&frame);
            saved.insert(id, at);
        }
        for id in &removed_kept {
            bytes.extend_from_slice(&encode(Kind::Removed, id, &[]));
        }
        let end = bytes.len() as u64;
        let zeroed = end + ZERO_AHEAD;
        bytes.resize(zeroed as usize, 0);

        let temp = self.work_dir.join(REWRITE_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_error("create", &temp))?;
        let written = file
            .write_all_at(&bytes, 0)
            .map_err(io_error("write", &temp))
            .and_then(|()| file.sync_all().map_err(io_error("fsync", &temp)))
            .and_then(|()| fs::rename(&temp, &self.path).map_err(io_error("rename", &self.path)));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        sync_dir(&self.work_dir)?;
        Ok(Rewritten {
            file,
            end,
            zeroed,
            saved,
            removed: removed_kept,
        })
    }
}

/// A journal file just written by [`Files::rewrite`].
struct Rewritten {
    file: File,
    end: u64,
    zeroed: u64,
    saved: HashMap<ContainerId, FrameAt>,
    removed: Vec<ContainerId>,
}

/// One frame: header and payload.
fn encode(kind: Kind, id: &ContainerId, record: &[u8]) -> Vec<u8> {
    let id = id.as_str().as_bytes();
    let payload_len = 2 + id.len() + record.len();
    let mut frame = Vec::with_capacity(HEADER + payload_len);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&[kind as u8, 0, 0, 0]);
    frame.extend_from_slice(&(payload_len as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&(id.len() as u16).to_le_bytes());
    frame.extend_from_slice(id);
    frame.extend_from_slice(record);
    let crc = checksum(&frame[4..12], &frame[HEADER..]);
    frame[12..16].copy_from_slice(&crc.to_le_bytes());
    frame
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

/// A frame read back: what it says of which container, and its length.
struct Decoded<'a> {
    kind: Kind,
    id: &'a str,
    record: &'a [u8],
    len: usize,
}

/// The frame at the start of `bytes`, if one is there whole and intact.
fn decode(bytes: &[u8]) -> Option<Decoded<'_>> {
    let header = bytes.get(..HEADER)?;
    if header[..4] != MAGIC {
        return None;
    }
    let kind = match header[4] {
        1 => Kind::Saved,
        2 => Kind::Removed,
        _ => return None,
    };
    let payload_len = u32::from_le_bytes(header[8..12].try_into().ok()?) as usize;
    if payload_len > MAX_PAYLOAD {
        return None;
    }
    let payload = bytes.get(HEADER..HEADER + payload_len)?;
    let crc = u32::from_le_bytes(header[12..16].try_into().ok()?);
    if checksum(&header[4..12], payload) != crc {
        return None;
    }
    let id_len = u16::from_le_bytes(payload.get(..2)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(payload.get(2..2 + id_len)?).ok()?;
    Some(Decoded {
        kind,
        id,
        record: &payload[2 + id_len..],
        len: HEADER + payload_len,
    })
}

/// Each container's last entry in a journal's bytes: its frames up to the
/// first that is not whole and intact.
fn last_entries(bytes: &[u8]) -> BTreeMap<ContainerId, Entry> {
    let mut last = BTreeMap::new();
    let mut at = 0;
    while let Some(frame) = decode(&bytes[at..]) {
        at += frame.len;
        let Ok(id) = ContainerId::new(frame.id) else {
            tracing::warn!(
                id = frame.id,
                "a journal frame names no valid container id; skipped"
            );
            continue;
        };
        let entry = match frame.kind {
            Kind::Saved => Entry::Saved(frame.record.to_vec()),
            Kind::Removed => Entry::Removed,
        };
        last.insert(id, entry);
    }
    last
}

/// Writes zeros over `[from, to)` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: usize = 64 << 10;
    let zeros = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(CHUNK);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Syncs a directory: the names made, renamed or removed in it are on disk.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ContainerId {
        ContainerId::new(name).unwrap()
    }

    fn open(dir: &Path) -> Journal {
        let records = dir.join("records");
        fs::create_dir_all(&records).unwrap();
        Journal::open(dir, &records).unwrap()
    }

    fn saved(entries: &BTreeMap<ContainerId, Entry>, name: &str) -> Option<String> {
        match entries.get(&id(name))? {
            Entry::Saved(record) => Some(String::from_utf8(record.clone()).unwrap()),
            Entry::Removed => Some("removed".into()),
        }
    }

    #[test]
    fn the_last_entry_of_each_container_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        journal.append_saved(&id("a"), b"{\"v\":1}").unwrap();
        journal.append_saved(&id("b"), b"{\"v\":2}").unwrap();
        journal.append_saved(&id("a"), b"{\"v\":3}").unwrap();
        journal.wait_durable(&id("a")).unwrap();
        let entries = journal.entries().unwrap();
        assert_eq!(saved(&entries, "a").as_deref(), Some("{\"v\":3}"));
        assert_eq!(saved(&entries, "b").as_deref(), Some("{\"v\":2}"));
        drop(journal);

        let reopened = open(dir.path());
        let entries = reopened.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(saved(&entries, "a").as_deref(), Some("{\"v\":3}"));
        // The reopen rewrote the file: one frame per container, then zeros.
        let bytes = fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        let frames = encode(Kind::Saved, &id("a"), b"{\"v\":3}").len()
            + encode(Kind::Saved, &id("b"), b"{\"v\":2}").len();
        assert!(bytes[frames..].iter().all(|b| *b == 0));
        assert_eq!(bytes.len() as u64, frames as u64 + ZERO_AHEAD);
    }

    #[test]
    fn a_removed_container_goes_with_its_record_file() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        journal.append_saved(&id("gone"), b"{}").unwrap();
        journal.append_saved(&id("kept"), b"{}").unwrap();
        journal.append_removed(&id("gone")).unwrap();
        // Nothing to wait for once removed.
        journal.wait_durable(&id("gone")).unwrap();
        assert_eq!(
            journal.entries().unwrap().get(&id("gone")),
            Some(&Entry::Removed)
        );
        // A power loss lost the unlink of its record file.
        let record = dir.path().join("records/gone.json");
        fs::write(&record, b"{}").unwrap();
        drop(journal);

        let reopened = open(dir.path());
        assert!(!record.exists(), "the reopen removes the record file");
        let entries = reopened.entries().unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), vec![&id("kept")]);
    }

    #[test]
    fn frames_after_a_torn_one_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        for (name, v) in [("a", 1), ("b", 2), ("c", 3)] {
            journal
                .append_saved(&id(name), format!("{{\"v\":{v}}}").as_bytes())
                .unwrap();
        }
        drop(journal);
        // A power loss tore `b`'s frame: one byte of its record never made
        // it, though `c`'s frame after it did.
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let a_len = encode(Kind::Saved, &id("a"), b"{\"v\":1}").len();
        let b_len = encode(Kind::Saved, &id("b"), b"{\"v\":2}").len();
        bytes[a_len + b_len - 2] = 0;
        fs::write(&path, &bytes).unwrap();

        let entries = last_entries(&bytes);
        assert_eq!(entries.keys().collect::<Vec<_>>(), vec![&id("a")]);
        let reopened = open(dir.path());
        assert_eq!(reopened.entries().unwrap().len(), 1);
        // `c`'s stale frame is gone from the rewritten file: a later frame
        // can never be read after a shorter one.
        reopened.append_saved(&id("d"), b"{}").unwrap();
        let entries = reopened.entries().unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), vec![&id("a"), &id("d")]);
    }

    #[test]
    fn damaged_headers_end_the_read() {
        let frame = encode(Kind::Saved, &id("a"), b"{}");
        assert!(decode(&frame).is_some());
        let damaged = |at: usize, value: u8| {
            let mut copy = frame.clone();
            copy[at] = value;
            decode(&copy).is_none()
        };
        assert!(damaged(0, b'X'), "magic");
        assert!(damaged(4, 9), "kind");
        assert!(damaged(5, 1), "padding (under the crc)");
        assert!(damaged(8, 0xff), "length past the bytes");
        assert!(damaged(12, frame[12] ^ 1), "crc");
        assert!(decode(&frame[..frame.len() - 1]).is_none(), "cut short");
        let mut huge = frame.clone();
        huge[8..12].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert!(decode(&huge).is_none(), "length above the bound");
    }

    #[test]
    fn concurrent_durable_saves_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(open(dir.path()));
        let rounds = 40;
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for round in 0..rounds {
                        let name = id(&format!("c{t}"));
                        journal
                            .append_saved(&name, format!("{{\"round\":{round}}}").as_bytes())
                            .unwrap();
                        journal.wait_durable(&name).unwrap();
                        let synced = lock(&journal.synced);
                        let appending = lock(&journal.appending);
                        let at = appending.saved[&name];
                        assert!(
                            (synced.generation, synced.offset)
                                >= (appending.generation, at.offset + at.len)
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // 320 durable saves: a flush made for one covered others.
        let flushes = journal.flushes();
        assert!(flushes < 8 * rounds, "{flushes} flushes");
        let entries = journal.entries().unwrap();
        for t in 0..8 {
            assert_eq!(
                saved(&entries, &format!("c{t}")).as_deref(),
                Some(format!("{{\"round\":{}}}", rounds - 1).as_str())
            );
        }
    }

    #[test]
    fn a_failed_flush_fails_every_durable_save_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("records");
        fs::create_dir_all(&records).unwrap();
        let journal = Journal::open_flushing_with(dir.path(), &records, |_| {
            Err(io::Error::from_raw_os_error(libc::EIO))
        })
        .unwrap();
        journal.append_saved(&id("a"), b"{}").unwrap();
        let failed = journal.wait_durable(&id("a")).unwrap_err().to_string();
        assert!(
            failed.contains("flush") && failed.contains(JOURNAL_FILE),
            "{failed}"
        );
        // Linux reports a writeback error once: a later flush that succeeds
        // would not prove the earlier appends reached the disk.
        journal.append_saved(&id("b"), b"{}").unwrap();
        assert!(journal.wait_durable(&id("b")).is_err());
        assert_eq!(journal.flushes(), 1);
    }

    #[test]
    fn a_full_journal_is_rewritten_with_the_last_frames() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let record = vec![b'x'; 256 << 10];
        // Past COMPACT_AT in frames of two containers and a removed third.
        journal.append_saved(&id("third"), b"{}").unwrap();
        journal.append_removed(&id("third")).unwrap();
        let frames = (COMPACT_AT / (256 << 10)) as usize + 4;
        for n in 0..frames {
            let name = if n % 2 == 0 { "even" } else { "odd" };
            let mut payload = record.clone();
            payload[0] = b'0' + (n % 10) as u8;
            journal.append_saved(&id(name), &payload).unwrap();
        }
        journal.wait_durable(&id("odd")).unwrap();
        let generation = lock(&journal.appending).generation;
        assert!(generation >= 2, "rewritten at open and when full");
        let size = fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len();
        assert!(size < COMPACT_AT / 4, "{size}");
        let entries = journal.entries().unwrap();
        assert_eq!(entries.len(), 2);
        let last_of = |name: &str| match &entries[&id(name)] {
            Entry::Saved(record) => record[0],
            Entry::Removed => panic!("{name} removed"),
        };
        assert_eq!(last_of("odd"), b'0' + ((frames - 1) % 10) as u8);
        assert_eq!(last_of("even"), b'0' + ((frames - 2) % 10) as u8);
    }
}
