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
/// record, never a torn file. Not synced to disk: the state dir is in the
/// runtime dir, which does not outlive a reboot, and a crash of the shim or
/// the agent leaves the page cache intact (decision 0014).
pub fn write_exit(state_dir: &Path, record: &ExitRecord) -> Result<(), StateError> {
    let path = state_dir.join(EXIT_FILE);
    let tmp = state_dir.join(format!(".{EXIT_FILE}.tmp"));
    let err = |source| StateError {
        path: path.clone(),
        source,
    };
    let mut file = File::create(&tmp).map_err(err)?;
    file.write_all(exit_json(record).as_bytes()).map_err(err)?;
    drop(file);
    fs::rename(&tmp, &path).map_err(err)?;
    Ok(())
}

/// The record as JSON, written by hand rather than with serde: it runs at
/// the container's end, when the shim has dropped its setup code pages, and
/// serde's machinery would be paged in again for one small object.
fn exit_json(record: &ExitRecord) -> String {
    fn number(value: Option<i32>) -> String {
        value.map_or_else(|| "null".to_string(), |v| v.to_string())
    }
    fn string(value: Option<&str>) -> String {
        let Some(value) = value else {
            return "null".to_string();
        };
        let mut out = String::with_capacity(value.len() + 2);
        out.push('"');
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
    format!(
        "{{\"exit_code\":{},\"signal\":{},\"started_at\":{},\"finished_at\":{},\"error\":{}}}\n",
        number(record.exit_code),
        number(record.signal),
        string(record.started_at.as_deref()),
        string(Some(&record.finished_at)),
        string(record.error.as_deref()),
    )
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

    #[test]
    fn hand_written_json_reads_back_with_serde() {
        for record in [
            ExitRecord {
                exit_code: None,
                signal: Some(9),
                started_at: Some("2026-11-22T02:43:14.393000000Z".into()),
                finished_at: "2026-11-22T02:43:15.000000001Z".into(),
                error: None,
            },
            ExitRecord {
                exit_code: None,
                signal: None,
                started_at: None,
                finished_at: "2026-11-22T02:43:15Z".into(),
                error: Some("exec \"a\\b\"\nfailed\u{1}: é".into()),
            },
        ] {
            let back: ExitRecord = serde_json::from_str(&exit_json(&record)).unwrap();
            assert_eq!(back, record);
        }
    }
}
