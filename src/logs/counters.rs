//! The shim's per-stream counters, `<state-dir>/logs.json`.

use std::io;
use std::path::{Path, PathBuf};

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
    fn reads_the_contract_shape_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
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
        assert!(read(dir.path()).is_err());
    }
}
