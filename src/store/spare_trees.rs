//! Container trees made ahead of launches (decision 0056). A fresh
//! container's dir is a ready `containers/.spare-<n>` tree renamed to its
//! id, instead of seven directories made on the work dir's disk on the
//! launch's critical path; a background thread keeps [`SPARE_TREES`] of
//! them. A spare holds nothing of anybody's: the empty directories of
//! [`make_tree`], which also makes a container's dir when no spare is
//! ready.
//!
//! A spare also holds, empty, the files a launch writes first (decision
//! 0059): its record's first copy ([`RECORD_PLACEHOLDER`], renamed into
//! `records/`) and the files its caller names (the log metadata). A launch
//! writes them in place: no inode is allocated on its path.
//!
//! Spares left by an earlier run of the agent (a crash, a stop) are
//! removed at start: one may be half made.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// How many ready trees the thread keeps: a burst of launches beyond them
/// makes its trees itself, as without spares.
pub const SPARE_TREES: usize = 4;

/// The prefix of a spare's name in `containers/`: no container id starts
/// with a dot.
pub const SPARE_PREFIX: &str = ".spare-";

/// The empty file in a spare that becomes its container's record's first
/// copy (renamed into `records/`).
pub const RECORD_PLACEHOLDER: &str = ".record.json";

/// After a failed make, the thread waits this long before the next.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The spares ready and the thread that makes them.
pub struct SpareTrees {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    ready: Vec<PathBuf>,
    stopped: bool,
}

impl SpareTrees {
    /// Removes the spares in `containers` (the work dir's) and starts the
    /// thread that keeps [`SPARE_TREES`] ready there, each with
    /// [`RECORD_PLACEHOLDER`] and `placeholders` (names in the tree) made
    /// empty.
    pub fn start(containers: PathBuf, placeholders: &'static [&'static str]) -> Arc<SpareTrees> {
        let spares = Arc::new(SpareTrees {
            state: Mutex::new(State {
                ready: Vec::new(),
                stopped: false,
            }),
            changed: Condvar::new(),
        });
        let weak = Arc::downgrade(&spares);
        let spawned = std::thread::Builder::new()
            .name("berth-spare-trees".into())
            .spawn(move || keep_ready(weak, containers, placeholders));
        if let Err(e) = spawned {
            tracing::warn!("start the spare trees' thread: {e}; launches make their trees");
        }
        spares
    }

    /// A ready tree, if any; the thread makes its replacement.
    pub fn take(&self) -> Option<PathBuf> {
        let mut state = self.lock();
        self.changed.notify_all();
        state.ready.pop()
    }

    /// How many trees are ready now.
    pub fn ready(&self) -> usize {
        self.lock().ready.len()
    }

    /// Puts back a tree taken and not used (its rename was refused), its
    /// placeholders emptied again; one that cannot be is not kept.
    pub fn give_back(&self, tree: PathBuf) {
        let emptied = fs::read_dir(&tree).and_then(|entries| {
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    fs::OpenOptions::new()
                        .write(true)
                        .open(entry.path())?
                        .set_len(0)?;
                }
            }
            Ok(())
        });
        match emptied {
            Ok(()) => self.lock().ready.push(tree),
            Err(e) => {
                tracing::warn!(tree = %tree.display(), "empty a spare's files: {e}; not kept");
                let _ = berth_confined::remove_tree(&tree);
            }
        }
    }

    /// Stops the thread; the spares stay for the next start to remove.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for SpareTrees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpareTrees")
            .field("ready", &self.lock().ready.len())
            .finish()
    }
}

impl Drop for SpareTrees {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread: removes old spares, then keeps [`SPARE_TREES`] ready until
/// stopped or dropped.
fn keep_ready(
    spares: Weak<SpareTrees>,
    containers: PathBuf,
    placeholders: &'static [&'static str],
) {
    // The launch that took a spare runs first: this thread's mkdirs wait
    // for an idle CPU (its nice value stays raised for its life).
    let _yielding = berth_sys::thread_priority::Lowered::by(10)
        .inspect_err(|e| tracing::debug!("lower the spare trees' priority: {e}"))
        .ok();
    remove_spares(&containers);
    let mut seq: u64 = 0;
    loop {
        {
            let Some(spares) = spares.upgrade() else {
                return;
            };
            let mut state = spares.lock();
            while !state.stopped && state.ready.len() >= SPARE_TREES {
                // Woken by `take` and `stop`; the timeout lets a dropped
                // owner end this thread.
                state = (spares.changed)
                    .wait_timeout(state, Duration::from_secs(5))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if Arc::strong_count(&spares) == 1 {
                    return;
                }
            }
            if state.stopped {
                return;
            }
        }
        seq += 1;
        let tree = containers.join(format!("{SPARE_PREFIX}{seq}"));
        match make_spare(&tree, placeholders) {
            Ok(()) => match spares.upgrade() {
                Some(spares) => spares.lock().ready.push(tree),
                None => return,
            },
            Err(e) => {
                tracing::warn!(tree = %tree.display(), "make a spare container tree: {e}");
                let _ = fs::remove_dir_all(&tree);
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}

/// Makes the empty tree of a container dir at `tree`: the dir and `logs`
/// (0700: root's alone), `sandbox`, and `root` (0700) with the overlay's
/// `work` (0700), `upper` and `merged` (0755; `manager::root::RootDirs`),
/// which a container without an overlay root leaves empty. Every container
/// dir is this tree, from a spare or made at its launch. An error below
/// `tree` names the dir it is about.
pub fn make_tree(tree: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o700).create(tree)?;
    // Whatever the umask left: root's alone.
    fs::set_permissions(tree, fs::Permissions::from_mode(0o700))?;
    let root = tree.join("root");
    for (path, mode) in [
        (tree.join("logs"), 0o700),
        // As `create_dir` makes a dir: the umask decides.
        (tree.join("sandbox"), 0o777),
        (root.clone(), 0o700),
        (root.join("work"), 0o700),
        // The upper dir's mode is that of the container's "/".
        (root.join("upper"), 0o755),
        (root.join("merged"), 0o755),
    ] {
        fs::DirBuilder::new()
            .mode(mode)
            .create(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Makes a spare: [`make_tree`], and in it the empty [`RECORD_PLACEHOLDER`]
/// and `placeholders` (0600: root's alone; a record and the log metadata
/// are never the container's to read).
fn make_spare(tree: &Path, placeholders: &[&str]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    make_tree(tree)?;
    for name in std::iter::once(&RECORD_PLACEHOLDER).chain(placeholders) {
        let path = tree.join(name);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Removes the spares in `containers` (empty trees; a name of the spare
/// form is never a container's).
fn remove_spares(containers: &Path) {
    let Ok(entries) = fs::read_dir(containers) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPARE_PREFIX)
        {
            if let Err(e) = berth_confined::remove_tree(&entry.path()) {
                tracing::warn!(tree = %entry.path().display(), "remove an old spare tree: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spares_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(SPARE_PREFIX))
            .collect();
        names.sort();
        names
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn old_spares_go_and_the_thread_keeps_its_count_ready() {
        let dir = tempfile::tempdir().unwrap();
        // A spare half made by an earlier run, and a container's dir.
        fs::create_dir_all(dir.path().join(".spare-7/logs")).unwrap();
        fs::create_dir(dir.path().join("web")).unwrap();
        let spares = SpareTrees::start(dir.path().to_path_buf(), &["meta.json"]);
        wait_for("ready spares", || spares.lock().ready.len() == SPARE_TREES);
        let names = spares_in(dir.path());
        assert_eq!(names.len(), SPARE_TREES, "{names:?}");
        assert!(dir.path().join("web").is_dir(), "a container's dir went");
        let taken = spares.take().unwrap();
        for (sub, mode) in [
            ("", 0o700),
            ("logs", 0o700),
            ("root", 0o700),
            ("root/work", 0o700),
        ] {
            let meta = fs::metadata(taken.join(sub)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{sub}");
        }
        for sub in ["sandbox", "root/upper", "root/merged"] {
            assert!(taken.join(sub).is_dir(), "{sub}");
        }
        assert_eq!(fs::read_dir(taken.join("sandbox")).unwrap().count(), 0);
        for file in [RECORD_PLACEHOLDER, "meta.json"] {
            let meta = fs::metadata(taken.join(file)).unwrap();
            assert!(meta.is_file() && meta.len() == 0, "{file}");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        }
        // Given back after a use that failed: emptied again.
        fs::write(taken.join("meta.json"), b"someone's").unwrap();
        spares.give_back(taken.clone());
        assert_eq!(fs::metadata(taken.join("meta.json")).unwrap().len(), 0);
        assert_eq!(spares.take().as_deref(), Some(taken.as_path()));
        // The taken one is replaced.
        wait_for("a replacement", || spares.lock().ready.len() == SPARE_TREES);
        assert_eq!(spares_in(dir.path()).len(), SPARE_TREES + 1);
        spares.stop();
    }
}
