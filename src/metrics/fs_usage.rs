//! `container_fs_usage_bytes`: the bytes a container keeps on the host's
//! disk, its sandbox plus its root's writable layer (`root/upper`), counted
//! as `du -sx` does. A walk costs a syscall per entry, so each container is
//! walked at most once per [`REFRESH`], and a scrape walks at most a
//! [`STALE_SHARE`] of its containers again (a new or restarted container's
//! first figure is always walked): a scrape of many containers does not
//! walk every tree.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_isolator::ContainerId;
use berth_isolator_blkio::DeviceNumber;

use crate::timestamp::Timestamp;

/// How old a figure may be before a scrape walks that container again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// A scrape walks again at most one in this many of its containers (those
/// whose figure is older than [`REFRESH`], the oldest first): scrapes as
/// far apart as Prometheus makes them (15 s) would otherwise walk every
/// sandbox each time. At 15 s per scrape a figure is then at most two
/// minutes old (cAdvisor walks once a minute, and backs off to 20 minutes
/// when walks are slow).
pub const STALE_SHARE: usize = 8;

#[derive(Debug, Default)]
struct Cache {
    /// By container: when it was walked, its start time then (a restarted
    /// container is walked again) and the bytes found.
    figures: HashMap<ContainerId, (Instant, Option<Timestamp>, u64)>,
    /// `/dev/NAME` of the work dir's filesystem, found once.
    device: OnceLock<String>,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Default::default);

/// One container's dirs to count.
pub struct Dirs<'a> {
    pub id: &'a ContainerId,
    pub started_at: Option<Timestamp>,
    pub sandbox: &'a Path,
    pub upper: &'a Path,
}

/// The bytes of each container of `dirs` (walked when its figure is older
/// than [`REFRESH`]), and the device label; figures of containers not in
/// `dirs` are forgotten.
pub fn usage(dirs: &[Dirs<'_>], work_dir: &Path) -> (Vec<Option<u64>>, String) {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let device = cache
        .device
        .get_or_init(|| {
            std::fs::metadata(work_dir)
                .ok()
                .and_then(|m| DeviceNumber::from_rdev(m.dev()).name())
                .map(|name| format!("/dev/{name}"))
                .unwrap_or_default()
        })
        .clone();
    let now = Instant::now();
    let live: HashSet<&ContainerId> = dirs.iter().map(|d| d.id).collect();
    cache.figures.retain(|id, _| live.contains(id));
    // The containers whose figure is stale, oldest first: a scrape walks at
    // most an eighth of all (never-walked ones always).
    let mut stale: Vec<(Instant, usize)> = dirs
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match cache.figures.get(d.id) {
            Some((at, started, _)) if *started == d.started_at => {
                (now.duration_since(*at) >= REFRESH).then_some((*at, i))
            }
            _ => None,
        })
        .collect();
    stale.sort();
    let walk_now: HashSet<usize> = stale
        .iter()
        .take(dirs.len().div_ceil(STALE_SHARE))
        .map(|(_, i)| *i)
        .collect();
    let out = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if let Some((_, started, bytes)) = cache.figures.get(d.id) {
                if *started == d.started_at && !walk_now.contains(&i) {
                    return Some(*bytes);
                }
            }
            let bytes = walk(d.sandbox)? + walk(d.upper).unwrap_or(0);
            cache
                .figures
                .insert(d.id.clone(), (now, d.started_at, bytes));
            Some(bytes)
        })
        .collect();
    (out, device)
}

fn walk(dir: &Path) -> Option<u64> {
    match berth_isolator_disk::du::measure(dir, None, &AtomicBool::new(false)) {
        Ok(measured) => Some(measured.bytes),
        Err(e) => {
            tracing::debug!(dir = %dir.display(), "metrics: fs usage: {e}");
            None
        }
    }
}
