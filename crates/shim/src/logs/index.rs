//! The timestamp index `S.idx`: lines `<logical offset> <unix ns>`, one at
//! the first line start of each chunk that holds one (and arrived at a later
//! time than the last entry), so every line's time is its first byte's
//! arrival, the raw log is never touched by timestamps, and a burst read in
//! one chunk costs one entry.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use berth_confined::{Dir, ReadFile};
pub use berth_protocol::logs::index::index_name;
use berth_protocol::logs::index::Entry;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// When a chunk arrived: the monotonic clock for the shim's timers, the
/// wall clock for what the index says.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub mono: Instant,
    pub unix_ns: u64,
}

impl Stamp {
    pub fn now() -> Stamp {
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Stamp {
            mono: Instant::now(),
            unix_ns,
        }
    }
}

pub struct TimeIndex {
    dir: Dir,
    name: String,
    path: PathBuf,
    file: File,
    /// The time of the last entry, which the next may not precede even if
    /// the wall clock steps back.
    last_unix_ns: u64,
}

impl TimeIndex {
    /// Opens (creating) the index of `stream` in `dir` for appending.
    pub fn open(dir: &Dir, stream: &str) -> io::Result<TimeIndex> {
        let name = index_name(stream);
        let file = dir.open_writable(&name, true, Some(0o640))?;
        // A new (empty) index has no last entry to read back.
        let last_unix_ns = match file.metadata().map(|m| m.len()) {
            Ok(0) => 0,
            _ => dir
                .open_file(&name)
                .ok()
                .and_then(|f| last_time(&f))
                .unwrap_or(0),
        };
        Ok(TimeIndex {
            dir: dir.try_clone()?,
            path: dir.path().join(&name),
            name,
            file,
            last_unix_ns,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a line starting in a chunk that arrived at `at` needs an
    /// entry: only when it arrived later than the last entry says (equal
    /// times, and a wall clock stepping back, add nothing).
    pub fn due(&self, at: Stamp) -> bool {
        at.unix_ns > self.last_unix_ns
    }

    /// Appends "the bytes from `offset` on arrived at `at`". A failed write
    /// still counts as the last entry: a full disk must not cost a syscall
    /// per chunk.
    pub fn record(&mut self, offset: u64, at: Stamp) -> io::Result<()> {
        self.last_unix_ns = self.last_unix_ns.max(at.unix_ns);
        // One write per line, so a concurrent reader never sees half of one
        // unless the disk is full.
        let line = entry(offset, self.last_unix_ns).to_line();
        self.file.write_all(line.as_bytes())
    }

    /// Rewrites the index (temp file + rename) without the entries below
    /// `oldest`, the first offset still on disk.
    pub fn prune(&mut self, oldest: u64) -> io::Result<()> {
        let tmp = format!(".{}.tmp", self.name);
        let input = BufReader::with_capacity(8192, self.dir.open_file(&self.name)?);
        let mut out = BufWriter::with_capacity(8192, self.dir.create_replacing(&tmp, 0o640)?);
        prune_entries(input, oldest, &mut out)?;
        out.flush()?;
        drop(out);
        self.dir.rename(&tmp, &self.name)?;
        self.file = self.dir.open_writable(&self.name, true, Some(0o640))?;
        Ok(())
    }
}

/// Copies the entries at or above `oldest`. The last entry below it is kept
/// as an entry at `oldest` itself: it timestamps the bytes from there to the
/// next entry, which would otherwise lose their time.
pub fn prune_entries(input: impl BufRead, oldest: u64, out: &mut impl Write) -> io::Result<()> {
    let mut put = |offset, time| out.write_all(Entry { offset, time }.to_line().as_bytes());
    let mut carried: Option<i64> = None;
    for line in input.lines() {
        let line = line?;
        let Some(Entry { offset, time }) = Entry::parse_line(&line) else {
            continue;
        };
        if offset < oldest {
            carried = Some(time);
            continue;
        }
        if let Some(time) = carried.take() {
            if offset > oldest {
                put(oldest, time)?;
            }
        }
        put(offset, time)?;
    }
    if let Some(time) = carried {
        put(oldest, time)?;
    }
    Ok(())
}

/// An index entry at `offset` for a time in unix nanoseconds (which fits
/// an `i64` until 2262).
fn entry(offset: u64, unix_ns: u64) -> Entry {
    Entry {
        offset,
        time: i64::try_from(unix_ns).unwrap_or(i64::MAX),
    }
}

/// The time of the file's last complete entry.
fn last_time(file: &ReadFile) -> Option<u64> {
    let from = file.len().saturating_sub(128);
    let mut tail = [0u8; 128];
    let n = file.read_at(&mut tail, from).ok()?;
    String::from_utf8_lossy(&tail[..n])
        .lines()
        .rev()
        .find_map(Entry::parse_line)
        .and_then(|e| u64::try_from(e.time).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn stamp(base: Stamp, ms: u64) -> Stamp {
        Stamp {
            mono: base.mono,
            unix_ns: base.unix_ns + ms * 1_000_000,
        }
    }

    #[test]
    fn an_entry_for_every_later_time_none_for_an_equal_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::open(&Dir::open(dir.path()).unwrap(), "stdout").unwrap();
        let t0 = Stamp::now();
        let mut offset = 0;
        for ms in [0, 0, 1, 3, 3, 10] {
            let at = stamp(t0, ms);
            if index.due(at) {
                index.record(offset, at).unwrap();
            }
            offset += 100;
        }
        let text = fs::read_to_string(index.path()).unwrap();
        let want: Vec<String> = [(0, 0), (200, 1), (300, 3), (500, 10)]
            .iter()
            .map(|(o, ms)| format!("{o} {}", t0.unix_ns + ms * 1_000_000))
            .collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), want);
    }

    #[test]
    fn times_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::open(&Dir::open(dir.path()).unwrap(), "stdout").unwrap();
        let t0 = Stamp::now();
        index.record(0, t0).unwrap();
        let mut stepped_back = stamp(t0, 20);
        stepped_back.unix_ns = t0.unix_ns - 5_000_000_000;
        index.record(10, stepped_back).unwrap();
        let text = fs::read_to_string(index.path()).unwrap();
        assert_eq!(text, format!("0 {0}\n10 {0}\n", t0.unix_ns));
        // A reopened index carries on from the last time on disk.
        let reopened = TimeIndex::open(&Dir::open(dir.path()).unwrap(), "stdout").unwrap();
        assert_eq!(reopened.last_unix_ns, t0.unix_ns);
    }

    #[test]
    fn prune_drops_old_entries_and_keeps_the_time_of_the_oldest_byte() {
        let run = |input: &str, oldest| {
            let mut out = Vec::new();
            prune_entries(input.as_bytes(), oldest, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let input = "0 100\n40 200\nbroken\n90 300\n120 400\n";
        assert_eq!(run(input, 0), "0 100\n40 200\n90 300\n120 400\n");
        assert_eq!(run(input, 50), "50 200\n90 300\n120 400\n");
        assert_eq!(run(input, 90), "90 300\n120 400\n");
        assert_eq!(run(input, 500), "500 400\n");
    }

    #[test]
    fn prune_rewrites_and_keeps_appending() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::open(&Dir::open(dir.path()).unwrap(), "stderr").unwrap();
        let t0 = Stamp::now();
        index.record(0, t0).unwrap();
        index.record(10, stamp(t0, 10)).unwrap();
        index.prune(10).unwrap();
        index.record(20, stamp(t0, 20)).unwrap();
        let text = fs::read_to_string(dir.path().join("stderr.idx")).unwrap();
        let offsets: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(offsets, ["10", "20"]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
