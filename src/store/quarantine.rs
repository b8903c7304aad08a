//! Loading one container record at start, and setting aside one that
//! cannot be read: renamed `<name>.corrupt-<seconds>`, logged, and reported
//! for its id, so one bad file costs nothing but its own container's record.

use std::path::{Path, PathBuf};

use berth_isolator::ContainerId;

use super::{read_json, StoreError};
use crate::container::Container;

/// What a quarantined record's name gets, followed by the time in seconds.
pub(super) const QUARANTINE_SUFFIX: &str = ".corrupt-";

/// A record as found on disk at start.
#[derive(Debug)]
pub enum Loaded {
    Record(Box<Container>),
    /// The record could not be read; the container's state is unknown.
    Quarantined(Quarantined),
}

/// A container whose record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub id: ContainerId,
    /// What was wrong and where the record went, for people.
    pub message: String,
}

/// Loads the record of `id` at `path`: the container; or, for a corrupt
/// record (or one quarantined before), the quarantine; or nothing when there
/// is no record at all.
pub(super) fn load_record(id: ContainerId, path: &Path) -> Option<Loaded> {
    let why = match read_json::<Container>(path) {
        Ok(container) if container.id == id => return Some(Loaded::Record(Box::new(container))),
        Ok(container) => format!("it names another container, {:?}", container.id.as_str()),
        Err(StoreError::Corrupt { source, .. }) => source.to_string(),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let earlier = earlier_quarantine(path)?;
            return Some(Loaded::Quarantined(Quarantined {
                id,
                message: format!(
                    "the container's record was unreadable and was moved to {}; whatever it runs is left alone",
                    earlier.display()
                ),
            }));
        }
        // Not the file's fault (EIO, EACCES): left in place for another try.
        Err(e) => {
            tracing::error!(%id, "cannot read the container's record: {e}");
            return Some(Loaded::Quarantined(Quarantined {
                id,
                message: format!("cannot read the container's record: {e}"),
            }));
        }
    };
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{QUARANTINE_SUFFIX}{seconds}"));
    let moved = path.with_file_name(name);
    let message = match std::fs::rename(path, &moved) {
        Ok(()) => format!(
            "the container's record {} is corrupt ({why}); moved to {}; whatever it runs is left alone",
            path.display(),
            moved.display()
        ),
        Err(e) => format!(
            "the container's record {} is corrupt ({why}) and could not be moved aside ({e}); whatever it runs is left alone",
            path.display()
        ),
    };
    tracing::error!(%id, "{message}");
    Some(Loaded::Quarantined(Quarantined { id, message }))
}

/// The newest quarantined copy of the record at `path`, if any.
fn earlier_quarantine(path: &Path) -> Option<PathBuf> {
    let prefix = format!("{}{QUARANTINE_SUFFIX}", path.file_name()?.to_string_lossy());
    std::fs::read_dir(path.parent()?)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarantined(loaded: Option<Loaded>) -> Quarantined {
        match loaded {
            Some(Loaded::Quarantined(q)) => q,
            other => panic!("expected a quarantine, got {other:?}"),
        }
    }

    #[test]
    fn a_truncated_record_is_moved_aside_and_stays_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.json");
        std::fs::write(&path, br#"{"id": "c1", "sta"#).unwrap();
        let id = ContainerId::new("c1").unwrap();
        let first = quarantined(load_record(id.clone(), &path));
        assert!(first.message.contains("is corrupt"), "{}", first.message);
        assert!(!path.exists());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("container.json.corrupt-"), "{names:?}");
        // The next start still knows the container is unaccounted for.
        let again = quarantined(load_record(id, &path));
        assert!(again.message.contains(&names[0]), "{}", again.message);
    }

    #[test]
    fn no_record_is_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let id = ContainerId::new("c1").unwrap();
        assert!(load_record(id, &dir.path().join("container.json")).is_none());
    }
}
