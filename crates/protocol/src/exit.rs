//! `<state-dir>/exit.json`: how a container (or an exec) ended, written by
//! the shim ([`ExitRecord::write`]) and read by the agent
//! ([`ExitRecord::read`]).

use std::io;
use std::path::{Path, PathBuf};

use berth_sys::atomic::{write_atomic, AtomicWriteError, Durability};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The file in the state dir (or an exec's dir) that records the end.
pub const EXIT_FILE: &str = "exit.json";

/// How the container ended, as written by the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// The signal number, when a signal killed the process.
    pub signal: Option<i32>,
    /// When the command was exec'd (RFC 3339), if it was.
    pub started_at: Option<String>,
    /// When the shim saw the end (RFC 3339).
    pub finished_at: String,
    /// Why the launch failed, if it did.
    pub error: Option<String>,
}

#[derive(Debug, Error)]
pub enum ExitRecordError {
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ExitRecord {
    /// Writes `exit.json` in `dir` crash-safely: a reader sees no record or
    /// the whole record, never a torn file. Not synced to disk: the state
    /// dir is in the runtime dir, which does not outlive a reboot, and a
    /// crash of the shim or the agent leaves the page cache intact
    /// (decision 0014).
    pub fn write(&self, dir: &Path) -> Result<(), AtomicWriteError> {
        write_atomic(
            &dir.join(EXIT_FILE),
            self.to_json().as_bytes(),
            Durability::CrashSafe,
        )
    }

    /// The record in `dir`; `None` if none was written.
    pub fn read(dir: &Path) -> Result<Option<ExitRecord>, ExitRecordError> {
        let path = dir.join(EXIT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ExitRecordError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ExitRecordError::Parse { path, source })
    }

    /// The record as JSON, written by hand rather than with serde: the
    /// shim writes it at the container's end, when it has dropped its setup
    /// code pages, and serde's machinery would be paged in again for one
    /// small object.
    pub fn to_json(&self) -> String {
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
            number(self.exit_code),
            number(self.signal),
            string(self.started_at.as_deref()),
            string(Some(&self.finished_at)),
            string(self.error.as_deref()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ExitRecord::read(dir.path()).unwrap().is_none());
        let mut rec = ExitRecord {
            exit_code: Some(3),
            signal: None,
            started_at: None,
            finished_at: "2024-01-01T00:00:00Z".into(),
            error: None,
        };
        rec.write(dir.path()).unwrap();
        rec.exit_code = Some(4);
        rec.write(dir.path()).unwrap();
        assert_eq!(ExitRecord::read(dir.path()).unwrap(), Some(rec));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_torn_record_is_a_parse_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EXIT_FILE), b"{").unwrap();
        let err = ExitRecord::read(dir.path()).unwrap_err();
        assert!(matches!(err, ExitRecordError::Parse { .. }));
        assert!(err.to_string().contains(EXIT_FILE), "{err}");
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
            let back: ExitRecord = serde_json::from_str(&record.to_json()).unwrap();
            assert_eq!(back, record);
        }
    }
}
