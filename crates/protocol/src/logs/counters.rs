//! `<state-dir>/logs.json`: what happened to each stream's bytes. The shim
//! writes it ([`LogCounters::write`], temp file + rename, no fsync: these
//! are statistics), the agent reads it ([`read`]).

use std::io;
use std::path::{Path, PathBuf};

use berth_sys::atomic::{write_atomic, AtomicWriteError, Durability};
use serde::{Deserialize, Serialize};

/// The counters file in a container's state dir.
pub const FILE: &str = "logs.json";

/// One stream's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamCounters {
    /// Written to segments; also the next logical offset.
    pub bytes: u64,
    /// Discarded in `drop` mode because the writer fell behind.
    pub dropped_bytes: u64,
    /// Read from the container but not written (write errors).
    pub lost_bytes: u64,
}

/// Both streams' counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogCounters {
    pub stdout: StreamCounters,
    pub stderr: StreamCounters,
}

#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    #[error("read log counters {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse log counters {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl LogCounters {
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

    /// Replaces the counters file in `state_dir` (a reader sees the old
    /// counters or the new ones, never a torn file).
    pub fn write(self, state_dir: &Path) -> Result<(), AtomicWriteError> {
        write_atomic(
            &state_dir.join(FILE),
            self.to_json().as_bytes(),
            Durability::CrashSafe,
        )
    }
}

/// Reads the counters in `state_dir`; `None` before the shim wrote any.
pub fn read(state_dir: &Path) -> Result<Option<LogCounters>, CountersError> {
    let path = state_dir.join(FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CountersError::Read { path, source }),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| CountersError::Parse { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_counters_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let mut counters = LogCounters::default();
        counters.write(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(counters));
        counters.stdout.bytes = u64::MAX;
        counters.stdout.dropped_bytes = 4;
        counters.stderr.lost_bytes = 1;
        counters.write(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(counters));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn reads_the_contract_shape_and_rejects_a_torn_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            r#"{"stdout": {"bytes": 123, "dropped_bytes": 4, "lost_bytes": 0},
                "stderr": {"bytes": 45, "dropped_bytes": 0, "lost_bytes": 1}}"#,
        )
        .unwrap();
        let counters = read(dir.path()).unwrap().unwrap();
        assert_eq!(counters.stdout.dropped_bytes, 4);
        assert_eq!(counters.stderr.lost_bytes, 1);
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(matches!(read(dir.path()), Err(CountersError::Parse { .. })));
    }
}
