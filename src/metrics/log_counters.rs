//! The log counters of a scrape: each running container's `logs.json`,
//! read again only when the shim has replaced it since the last scrape (it
//! does so at most once a second, by rename): a `stat` per container instead
//! of an open, reads, a close and a parse.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{LazyLock, Mutex, PoisonError};

use berth_isolator::ContainerId;

use crate::logs::counters::{self, LogCounters};

/// By container: the file's inode and change time when read, and what it said.
type Cache = HashMap<ContainerId, ((u64, i64, i64), LogCounters)>;

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Default::default);

/// The counters of each of `containers` (id, state dir); figures of
/// containers not listed are forgotten.
pub fn read(containers: &[(&ContainerId, &Path)]) -> Vec<Option<LogCounters>> {
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let live: HashSet<&ContainerId> = containers.iter().map(|(id, _)| *id).collect();
    cache.retain(|id, _| live.contains(id));
    containers
        .iter()
        .map(|(id, state_dir)| {
            let path = state_dir.join(counters::FILE);
            let Ok(meta) = std::fs::metadata(&path) else {
                cache.remove(*id);
                return None;
            };
            let version = (meta.ino(), meta.ctime(), meta.ctime_nsec());
            if let Some((seen, logs)) = cache.get(*id) {
                if *seen == version {
                    return Some(*logs);
                }
            }
            match counters::read(state_dir) {
                Ok(Some(logs)) => {
                    cache.insert((*id).clone(), (version, logs));
                    Some(logs)
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(id = %id, "metrics: {e}");
                    None
                }
            }
        })
        .collect()
}
