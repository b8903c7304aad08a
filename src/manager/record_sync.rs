//! Making a fresh container's create record durable on another thread
//! while the launch goes on; the go waits for it (decision 0050).

use super::ManagerError;
use crate::store::StoreError;

/// The fsyncs of a record saved crash-safe, under way.
pub(super) struct RecordSync(std::sync::mpsc::Receiver<Result<(), StoreError>>);

impl RecordSync {
    /// Runs `sync` (e.g. `Store::sync_record`) on another thread
    /// (a side thread, `crate::side_threads`; decision 0057).
    pub(super) fn start(
        sync: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
    ) -> RecordSync {
        let (done, said) = std::sync::mpsc::channel();
        crate::side_threads::run(move || {
            let _ = done.send(sync());
        });
        RecordSync(said)
    }

    /// Waits for the fsyncs: the container's command must not run on a
    /// record that a power loss could take. Dropped instead (a launch that
    /// failed first), the sync finishes on its own: a record removed
    /// meanwhile is no error to it.
    pub(super) fn wait(self) -> Result<(), ManagerError> {
        match self.0.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ManagerError::Internal(format!(
                "make the container's record durable: {e}"
            ))),
            Err(_) => Err(ManagerError::Internal("the record's fsync panicked".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Durability, Store};
    use berth_isolator::ContainerId;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("work"), &dir.path().join("run"));
        store.init().unwrap();
        (dir, Arc::new(store))
    }

    /// A record as `Store::save` leaves it before its sync: written
    /// crash-safe, not synced.
    fn saved(store: &Store, id: &str) -> ContainerId {
        let container = crate::store::test_record(id);
        std::fs::create_dir_all(store.state_dir(&container.id)).unwrap();
        store.save(&container, Durability::CrashSafe).unwrap();
        container.id.clone()
    }

    /// `Store::sync_record` of `id` on a `RecordSync`, waited for, as a
    /// launch does before its go.
    fn sync(store: &Arc<Store>, id: &ContainerId) -> Result<(), ManagerError> {
        let (store, id) = (store.clone(), id.clone());
        RecordSync::start(move || store.sync_record(&id)).wait()
    }

    #[test]
    fn a_saved_record_is_synced_and_a_removed_one_is_no_error() {
        let (_dir, store) = store();
        let id = saved(&store, "synced");
        let flushes = store.journal_flushes();
        sync(&store, &id).unwrap();
        assert_eq!(store.journal_flushes(), flushes + 1);
        // `rm` of a launch that failed before its go: nothing to sync.
        store.remove(&id).unwrap();
        sync(&store, &id).unwrap();
    }

    #[test]
    fn a_sync_that_fails_fails_the_wait() {
        // As `Store::sync_record` fails when the journal's flush did (its
        // own test makes one fail): an error the go must not pass.
        let failed = RecordSync::start(|| {
            Err(crate::store::StoreError::Io {
                op: "flush",
                path: "/var/lib/berth/records.journal".into(),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            })
        })
        .wait()
        .unwrap_err();
        assert!(
            matches!(&failed, ManagerError::Internal(m) if m.contains("durable") && m.contains("records.journal")),
            "{failed:?}"
        );
    }
}
