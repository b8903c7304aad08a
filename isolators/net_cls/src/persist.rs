//! The handle a container holds, persisted in its runtime dir so that a
//! restarted agent reserves it again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use berth_sys::atomic::{write_atomic, Durability};
use serde_json::json;

use crate::{ClassId, NetClsError};

/// The file name under the container's isolator runtime dir (shared with
/// other isolators, hence the prefix).
pub(crate) const FILE: &str = "net_cls.json";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes `classid` crash-safe: a temp file renamed over the old one. A
/// crash of the agent leaves either the old file or the new one, never
/// half; not synced to disk, as the runtime dir does not outlive a reboot.
pub(crate) fn save(dir: &Path, classid: ClassId) -> Result<(), NetClsError> {
    let body = json!({
        "primary": classid.primary,
        "secondary": classid.secondary,
        "classid": classid.to_string(),
    });
    write_atomic(
        &path(dir),
        body.to_string().as_bytes(),
        Durability::CrashSafe,
    )
    .map_err(|e| NetClsError::State {
        op: e.op,
        path: e.path,
        source: e.source,
    })
}

/// Reads the persisted class id; `None` when there is none (the container
/// does not use net_cls, or crashed before the handle was recorded).
pub(crate) fn load(dir: &Path) -> Result<Option<ClassId>, NetClsError> {
    let file = path(dir);
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(NetClsError::State {
                op: "read",
                path: file,
                source,
            })
        }
    };
    let bad = |reason| NetClsError::StateParse {
        path: file.clone(),
        value: text.clone(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad("not JSON"))?;
    let handle = |key: &str| {
        value[key]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| bad("expected 16-bit \"primary\" and \"secondary\" numbers"))
    };
    Ok(Some(ClassId::new(handle("primary")?, handle("secondary")?)))
}

/// Removes the persisted handle; a missing file is fine.
pub(crate) fn remove(dir: &Path) -> Result<(), NetClsError> {
    let file = path(dir);
    match fs::remove_file(&file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(NetClsError::State {
            op: "remove",
            path: file,
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), ClassId::new(0xAAAA, 7)).unwrap();
        save(dir.path(), ClassId::new(0xAAAA, 9)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(ClassId::new(0xAAAA, 9)));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE], "no temp file left");
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
    }

    #[test]
    fn garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE),
            r#"{"primary": 70000, "secondary": 1}"#,
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains(FILE), "{err}");
        fs::write(dir.path().join(FILE), "half").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(NetClsError::StateParse { .. })
        ));
    }
}
