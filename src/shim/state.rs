//! The shim's records in the state dir.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::protocol::{ExitRecord, EXIT_FILE};

#[derive(Debug, Error)]
#[error("write {path}: {source}")]
pub struct StateError {
    path: PathBuf,
    source: io::Error,
}

/// Writes `exit.json` crash-safely: a reader sees the old state or the whole
/// record, never a torn file.
pub fn write_exit(state_dir: &Path, record: &ExitRecord) -> Result<(), StateError> {
    let path = state_dir.join(EXIT_FILE);
    let tmp = state_dir.join(format!(".{EXIT_FILE}.tmp"));
    let err = |source| StateError {
        path: path.clone(),
        source,
    };
    let data = serde_json::to_vec_pretty(record).map_err(|e| err(io::Error::other(e)))?;
    let mut file = File::create(&tmp).map_err(err)?;
    file.write_all(&data).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, &path).map_err(err)?;
    // The rename itself is durable only once the directory is synced.
    File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = ExitRecord {
            exit_code: Some(3),
            signal: None,
            started_at: None,
            finished_at: "2024-01-01T00:00:00Z".into(),
            error: None,
        };
        write_exit(dir.path(), &rec).unwrap();
        rec.exit_code = Some(4);
        write_exit(dir.path(), &rec).unwrap();
        let back: ExitRecord =
            serde_json::from_slice(&fs::read(dir.path().join(EXIT_FILE)).unwrap()).unwrap();
        assert_eq!(back, rec);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
