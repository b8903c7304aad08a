//! When to write `<state-dir>/logs.json` (its format and the write are
//! berth-protocol's): at most once a [`INTERVAL`] while something changed,
//! and at exit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use berth_protocol::logs::counters::{LogCounters, StreamCounters};
use berth_sys::atomic::AtomicWriteError;

/// The least time between two writes.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// A failed write of the counters file.
pub type CountersError = AtomicWriteError;

pub struct CountersFile {
    state_dir: PathBuf,
    written: Option<LogCounters>,
    last_write: Option<Instant>,
}

impl CountersFile {
    pub fn new(state_dir: &Path) -> CountersFile {
        CountersFile {
            state_dir: state_dir.to_path_buf(),
            written: None,
            last_write: None,
        }
    }

    /// How long until `current` should be written: `None` if it is on disk
    /// already.
    pub fn due_in(&self, current: &LogCounters, now: Instant) -> Option<Duration> {
        if self.written.as_ref() == Some(current) {
            return None;
        }
        Some(match self.last_write {
            None => Duration::ZERO,
            Some(last) => INTERVAL.saturating_sub(now.saturating_duration_since(last)),
        })
    }

    /// Writes `current` if it changed and the interval has passed.
    pub fn tick(&mut self, current: &LogCounters, now: Instant) -> Result<(), CountersError> {
        match self.due_in(current, now) {
            Some(wait) if wait.is_zero() => self.write(current, now),
            _ => Ok(()),
        }
    }

    /// Writes `current` now.
    pub fn write(&mut self, current: &LogCounters, now: Instant) -> Result<(), CountersError> {
        // Counted as written even if it fails: retrying a failing write on
        // every chunk would slow the pump; the next change retries.
        self.written = Some(*current);
        self.last_write = Some(now);
        current.write(&self.state_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::logs::counters::FILE as LOGS_FILE;
    use std::fs;

    #[test]
    fn writes_the_documented_shape_at_most_once_an_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = CountersFile::new(dir.path());
        let t0 = Instant::now();
        let mut c = LogCounters::default();
        assert_eq!(file.due_in(&c, t0), Some(Duration::ZERO));
        file.tick(&c, t0).unwrap();
        assert_eq!(file.due_in(&c, t0), None);
        c.stdout.bytes = 5;
        c.stderr.lost_bytes = 2;
        let half = t0 + INTERVAL / 2;
        assert_eq!(file.due_in(&c, half), Some(INTERVAL / 2));
        file.tick(&c, half).unwrap();
        let on_disk: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(LOGS_FILE)).unwrap()).unwrap();
        assert_eq!(on_disk["stdout"]["bytes"], 0);
        file.tick(&c, t0 + INTERVAL).unwrap();
        let on_disk: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(LOGS_FILE)).unwrap()).unwrap();
        assert_eq!(
            on_disk,
            serde_json::json!({
                "stdout": {"bytes": 5, "dropped_bytes": 0, "lost_bytes": 0},
                "stderr": {"bytes": 0, "dropped_bytes": 0, "lost_bytes": 2},
            })
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
