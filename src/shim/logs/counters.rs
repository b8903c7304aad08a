//! `<state-dir>/logs.json`: what happened to each stream's bytes. Written
//! (temp file + rename, no fsync: these are statistics) at most once a
//! [`INTERVAL`] while something changed, and at exit.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

pub const LOGS_FILE: &str = "logs.json";

/// The least time between two writes.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One stream's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamCounters {
    /// Written to segments: also the next logical offset.
    pub bytes: u64,
    /// Discarded in drop mode because the writer fell behind.
    pub dropped_bytes: u64,
    /// Read but not written (a full disk, other write errors).
    pub lost_bytes: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub stdout: StreamCounters,
    pub stderr: StreamCounters,
}

impl Counters {
    /// The JSON of docs/log-format.md. Written by hand, not with serde:
    /// this runs in the pump loop of every shim, where each distinct code
    /// path costs resident pages for the container's whole life.
    pub fn to_json(self) -> String {
        let stream = |c: &StreamCounters| {
            format!(
                "{{\"bytes\":{},\"dropped_bytes\":{},\"lost_bytes\":{}}}",
                c.bytes, c.dropped_bytes, c.lost_bytes
            )
        };
        format!(
            "{{\"stdout\":{},\"stderr\":{}}}",
            stream(&self.stdout),
            stream(&self.stderr)
        )
    }
}

#[derive(Debug, Error)]
#[error("write {path}: {source}")]
pub struct CountersError {
    path: PathBuf,
    source: io::Error,
}

pub struct CountersFile {
    path: PathBuf,
    tmp: PathBuf,
    written: Option<Counters>,
    last_write: Option<Instant>,
}

impl CountersFile {
    pub fn new(state_dir: &Path) -> CountersFile {
        CountersFile {
            path: state_dir.join(LOGS_FILE),
            tmp: state_dir.join(format!(".{LOGS_FILE}.tmp")),
            written: None,
            last_write: None,
        }
    }

    /// How long until `current` should be written: `None` if it is on disk
    /// already.
    pub fn due_in(&self, current: &Counters, now: Instant) -> Option<Duration> {
        if self.written.as_ref() == Some(current) {
            return None;
        }
        Some(match self.last_write {
            None => Duration::ZERO,
            Some(last) => INTERVAL.saturating_sub(now.saturating_duration_since(last)),
        })
    }

    /// Writes `current` if it changed and the interval has passed.
    pub fn tick(&mut self, current: &Counters, now: Instant) -> Result<(), CountersError> {
        match self.due_in(current, now) {
            Some(wait) if wait.is_zero() => self.write(current, now),
            _ => Ok(()),
        }
    }

    /// Writes `current` now.
    pub fn write(&mut self, current: &Counters, now: Instant) -> Result<(), CountersError> {
        // Counted as written even if it fails: retrying a failing write on
        // every chunk would slow the pump; the next change retries.
        self.written = Some(*current);
        self.last_write = Some(now);
        let err = |source| CountersError {
            path: self.path.clone(),
            source,
        };
        fs::write(&self.tmp, current.to_json()).map_err(err)?;
        fs::rename(&self.tmp, &self.path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_documented_shape_at_most_once_an_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = CountersFile::new(dir.path());
        let t0 = Instant::now();
        let mut c = Counters::default();
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
