//! The agent's on-disk state: where each container's files live, and
//! crash-safe writes of its record.
//!
//! ```text
//! <work_dir>/containers/                       0700 root
//! <work_dir>/containers/<id>/                  the container's dir (0700 root,
//!                                              kept after exit)
//! <work_dir>/containers/<id>/sandbox/          the sandbox: the only part
//!                                              mounted into the container
//! <work_dir>/containers/<id>/logs/             log segments, indexes and temp
//!                                              files (0700 root, never mounted:
//!                                              the container can neither see
//!                                              nor write them)
//! <runtime_dir>/containers/<id>/container.json the agent's record
//! <runtime_dir>/containers/<id>/exit.json      the shim's record of the end
//! <runtime_dir>/containers/<id>/bundle/        the OCI bundle
//! <runtime_dir>/containers/<id>/isolators/     isolators' recovery state
//! <runtime_dir>/boot_id                       the boot the runtime dir belongs to
//! <runtime_dir>/agent.lock                    flock'd by the agent that owns the dir
//! <work_dir>/records/<id>.json                 a copy of the record that
//!                                              survives a reboot (the runtime
//!                                              dir is a tmpfs)
//! <work_dir>/records.journal                   every save of those copies,
//!                                              appended: what makes them
//!                                              durable (decision 0059)
//! ```
//!
//! The record copy in the work dir is outside the sandbox on purpose: the
//! container can write its sandbox, and must not rewrite its own record.
//! Containers launched by agents before the logs dir existed have their
//! sandbox at `<work_dir>/containers/<id>/` itself, logs inside it; their
//! records say so (no `log_dir`), and removal of the container dir covers
//! both layouts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use berth_isolator::ContainerId;

use crate::container::Container;
use berth_protocol::exit::ExitRecordError;
use berth_protocol::ExitRecord;

mod journal;
mod lock;
mod quarantine;
pub mod spare_trees;
pub use journal::JOURNAL_FILE;
use journal::{Entry, Journal};
pub use lock::{LockError, RuntimeLock};
use quarantine::{load_record, QUARANTINE_SUFFIX};
pub use quarantine::{Loaded, Quarantined};

const RECORD_FILE: &str = "container.json";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("remove {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: berth_confined::ConfinedError,
    },
    #[error("corrupt record {}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The agent's directories.
#[derive(Debug, Clone)]
pub struct Store {
    work_dir: PathBuf,
    runtime_dir: PathBuf,
    /// Container trees made ahead, once [`Store::keep_spare_trees`] runs.
    spare_trees: std::sync::OnceLock<std::sync::Arc<spare_trees::SpareTrees>>,
    /// The records' journal, opened by [`Store::init`]; shared by clones.
    journal: std::sync::Arc<std::sync::OnceLock<Journal>>,
    /// One of them, chosen by the container's id, is held while a record
    /// is appended to the journal and written to its file; shared by
    /// clones.
    saving: std::sync::Arc<SavingLocks>,
}

/// The locks that keep each container's saves in one order in the journal
/// and in its record file. Only saves of one container need an order: the
/// lock is chosen by the id, so that saves of others (parallel launches)
/// seldom wait for one another, which they did behind a single lock
/// whenever its holder was preempted on a busy host.
#[derive(Debug)]
struct SavingLocks([std::sync::Mutex<()>; SAVING_LOCKS]);

impl Default for SavingLocks {
    fn default() -> SavingLocks {
        SavingLocks(std::array::from_fn(|_| std::sync::Mutex::new(())))
    }
}

/// How many [`SavingLocks`]: well above the launches a host runs at once.
const SAVING_LOCKS: usize = 64;

impl SavingLocks {
    /// The lock for `id`'s saves, held.
    fn hold(&self, id: &ContainerId) -> std::sync::MutexGuard<'_, ()> {
        self.0[Self::index(id)]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Which lock is `id`'s: always the same one (a hash with fixed keys).
    fn index(id: &ContainerId) -> usize {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(id.as_str());
        (hash % SAVING_LOCKS as u64) as usize
    }
}

impl Store {
    pub fn new(work_dir: &Path, runtime_dir: &Path) -> Store {
        Store {
            work_dir: work_dir.to_path_buf(),
            runtime_dir: runtime_dir.to_path_buf(),
            spare_trees: std::sync::OnceLock::new(),
            journal: Default::default(),
            saving: Default::default(),
        }
    }

    /// Keeps container trees ready for [`Store::create_container`]
    /// from now on (see [`spare_trees`]); the work dir is initialized.
    pub fn keep_spare_trees(&self) {
        self.spare_trees.get_or_init(|| {
            spare_trees::SpareTrees::start(
                self.work_dir.join("containers"),
                &[crate::logs::meta::META_FILE],
            )
        });
    }

    /// Creates the top-level directories, mode 0700: no host user but root
    /// may reach a sandbox (which a container can fill with anything,
    /// setuid files included) or a record. A container running as another
    /// user still reaches its own sandbox: the shim binds it into the
    /// container while still root, and inside the container the path leads
    /// through berth's own mounts, not through these directories.
    pub fn init(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        for dir in [
            self.work_dir.join("records"),
            self.work_dir.join("containers"),
            self.runtime_dir.join("containers"),
        ] {
            fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(io_error("chmod", &dir))?;
        }
        // Each container's tree in a block group of its own (decision 0049).
        let containers = self.work_dir.join("containers");
        let spread = fs::File::open(&containers)
            .and_then(|dir| berth_sys::inode_flags::spread_subdirectories(&dir));
        match spread {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(dir = %containers.display(), "the filesystem places directories its own way (no chattr +T)")
            }
            Err(e) => tracing::warn!(dir = %containers.display(), "chattr +T: {e}"),
        }
        if self.journal.get().is_none() {
            let journal = Journal::open(&self.work_dir, &self.work_dir.join("records"))?;
            let _ = self.journal.set(journal);
        }
        Ok(())
    }

    /// The records' journal; an error before [`Store::init`].
    fn journal(&self) -> Result<&Journal, StoreError> {
        self.journal.get().ok_or_else(|| StoreError::Io {
            op: "append to",
            path: self.work_dir.join(JOURNAL_FILE),
            source: io::Error::other("the store is not initialized"),
        })
    }

    /// `<work_dir>/containers/<id>`: everything of the container that
    /// outlives it (sandbox and logs).
    pub fn container_dir(&self, id: &ContainerId) -> PathBuf {
        self.work_dir.join("containers").join(id.as_str())
    }

    /// The sandbox: the only part of the container dir mounted into the
    /// container.
    pub fn sandbox(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("sandbox")
    }

    /// Where the shim writes the container's logs: beside the sandbox, out
    /// of the container's reach.
    pub fn log_dir(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join("logs")
    }

    /// Saves a fresh container's first record, as [`Store::save`] does
    /// (`durability` for the work dir's copy), then creates its container
    /// dir: the record first, so that a crash leaves no container dir that
    /// no record explains (decisions 0014, 0050). The dir (0700 root: only
    /// the sandbox is mounted into the container) holds what
    /// [`spare_trees::make_tree`] makes: the logs dir, the sandbox, owned
    /// by `owner` (uid, gid) if given, and the dirs of an overlay root. A
    /// spare tree, when one is ready, becomes the container dir by a
    /// rename; the record's first copy is written in it (decisions 0057,
    /// 0059) and so are `first_files` (name in the container dir, bytes),
    /// before the rename; without a spare they are written once the dir is
    /// made. `Ok(false)`, with the record saved and no dir touched, when the
    /// container dir exists already.
    pub fn create_container(
        &self,
        container: &Container,
        durability: Durability,
        owner: Option<(u32, u32)>,
        first_files: &[(&str, &[u8])],
    ) -> Result<bool, StoreError> {
        let spares = self.spare_trees.get();
        let spare = spares.and_then(|spares| spares.take());
        let saved = self
            .save_with_temp_in(container, Copies::Both(durability), spare.as_deref())
            .and_then(|()| match &spare {
                // Over the spare's empty placeholders.
                Some(spare) => first_files
                    .iter()
                    .try_for_each(|(name, bytes)| write_over(&spare.join(name), bytes)),
                None => Ok(()),
            });
        if let Err(e) = saved {
            // The spare is as it was, but for its placeholders, which
            // `give_back` empties.
            if let (Some(spares), Some(spare)) = (spares, spare) {
                spares.give_back(spare);
            }
            return Err(e);
        }
        let from_spare = spare.is_some();
        if !self.create_container_dirs(&container.id, owner, spare)? {
            return Ok(false);
        }
        if !from_spare {
            let dir = self.container_dir(&container.id);
            for (name, bytes) in first_files {
                write_atomic(&dir.join(name), bytes, Durability::CrashSafe)?;
            }
        }
        Ok(true)
    }

    /// The container dir from `spare` (a tree taken from the spares) or
    /// made; `Ok(false)`, creating nothing, when it exists already.
    fn create_container_dirs(
        &self,
        id: &ContainerId,
        owner: Option<(u32, u32)>,
        spare: Option<PathBuf>,
    ) -> Result<bool, StoreError> {
        let container_dir = self.container_dir(id);
        let sandbox = self.sandbox(id);
        let chown_sandbox = || match owner {
            Some((uid, gid)) => std::os::unix::fs::chown(&sandbox, Some(uid), Some(gid))
                .map_err(io_error("chown", &sandbox)),
            None => Ok(()),
        };
        if let (Some(spares), Some(spare)) = (self.spare_trees.get(), spare) {
            // Never over an existing dir: that is an old container's.
            match berth_sys::rename::rename_noreplace(&spare, &container_dir) {
                Ok(()) => return chown_sandbox().map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    spares.give_back(spare);
                    return Ok(false);
                }
                Err(e) => {
                    tracing::warn!(spare = %spare.display(), "rename a spare tree: {e}; making the dirs");
                    let _ = berth_confined::remove_tree(&spare);
                }
            }
        }
        // Only the container dir itself can exist: its contents are made in
        // it once it is new.
        match spare_trees::make_tree(&container_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_error("create", &container_dir)(e)),
        }
        chown_sandbox().map(|()| true)
    }

    pub fn state_dir(&self, id: &ContainerId) -> PathBuf {
        self.runtime_dir.join("containers").join(id.as_str())
    }

    pub fn bundle_dir(&self, id: &ContainerId) -> PathBuf {
        self.state_dir(id).join("bundle")
    }

    pub fn isolator_dir(&self, id: &ContainerId) -> PathBuf {
        self.state_dir(id).join("isolators")
    }

    /// Saves a container's record: both copies replaced atomically (an
    /// agent crash leaves the old or the new record), the work dir's copy
    /// also synced to disk when `durability` says so (see decision 0014:
    /// the runtime dir does not outlive a reboot, so its copy never is).
    ///
    /// [`Copies::RuntimeOnly`] leaves the work dir's copy as it was: for
    /// the states a reboot makes moot (decision 0044).
    pub fn save(&self, container: &Container, copies: impl Into<Copies>) -> Result<(), StoreError> {
        let copies = copies.into();
        let container_dir = self.container_dir(&container.id);
        let is_dir = |path: &Path| path.symlink_metadata().is_ok_and(|m| m.is_dir());
        let temp_dir = (matches!(copies, Copies::Both(_)) && is_dir(&container_dir))
            .then_some(container_dir.as_path());
        self.save_with_temp_in(container, copies, temp_dir)
    }

    /// [`Store::save`], the work dir's copy written through a temp file in
    /// `temp_dir` (the container's dir, or the spare tree that becomes it)
    /// when given: its inode is then allocated in that dir's block group,
    /// not in the group of `records`, where every save of every container
    /// would walk past the inodes the saves before it freed (decision
    /// 0057).
    fn save_with_temp_in(
        &self,
        container: &Container,
        copies: Copies,
        temp_dir: Option<&Path>,
    ) -> Result<(), StoreError> {
        let path = self.state_dir(&container.id).join(RECORD_FILE);
        let bytes = serde_json::to_vec_pretty(container).expect("a container record serializes");
        write_atomic(&path, &bytes, Durability::CrashSafe)?;
        match copies {
            Copies::RuntimeOnly => Ok(()),
            Copies::Both(durability) => {
                let journal = self.journal()?;
                {
                    // The journal first: it is never behind the record file,
                    // and both take concurrent saves in the same order.
                    let _order = self.saving.hold(&container.id);
                    journal.append_saved(&container.id, &bytes)?;
                    write_record_copy(&self.persistent_record(&container.id), &bytes, temp_dir)?;
                }
                if durability == Durability::Durable {
                    journal.wait_durable(&container.id)?;
                }
                Ok(())
            }
        }
    }

    /// Makes the work dir's copy of a record saved [`Durability::CrashSafe`]
    /// durable after all: waits for the journal's flush that covers its
    /// last save (decisions 0035, 0059; one flush for every save waiting
    /// with it). A record removed meanwhile is fine: there is nothing to
    /// keep.
    pub fn sync_record(&self, id: &ContainerId) -> Result<(), StoreError> {
        self.journal()?.wait_durable(id)
    }

    /// How many flushes the records' journal has made since the agent
    /// started.
    pub fn journal_flushes(&self) -> u64 {
        self.journal.get().map_or(0, Journal::flushes)
    }

    fn persistent_record(&self, id: &ContainerId) -> PathBuf {
        self.work_dir.join("records").join(format!("{id}.json"))
    }

    /// Records kept in the work dir, for containers whose runtime state is
    /// gone (the host rebooted, or the runtime dir was wiped). Each is the
    /// journal's last record of the container, or its record file when the
    /// journal has none (saved by an agent before the journal, decision
    /// 0059); a container the journal says was removed has none. A corrupt
    /// record file is quarantined (see [`Loaded::Quarantined`]).
    pub fn load_persistent(&self) -> Result<Vec<Loaded>, StoreError> {
        let dir = self.work_dir.join("records");
        let mut journaled = match self.journal.get() {
            Some(journal) => journal.entries()?,
            None => Default::default(),
        };
        let mut ids: std::collections::BTreeSet<ContainerId> = journaled.keys().cloned().collect();
        for name in entry_names(&dir)? {
            // `<id>.json`, or only a quarantined `<id>.json.corrupt-<time>`.
            let id = name
                .strip_suffix(".json")
                .or_else(|| name.split_once(QUARANTINE_SUFFIX).map(|(id, _)| id))
                .and_then(|id| id.strip_suffix(".json").or(Some(id)));
            match id.map(ContainerId::new) {
                Some(Ok(id)) => {
                    ids.insert(id);
                }
                Some(Err(_)) => {
                    tracing::warn!(file = %dir.join(&name).display(), "ignoring a record file not named after a container id")
                }
                None => {}
            }
        }
        Ok(ids
            .into_iter()
            .filter_map(|id| match journaled.remove(&id) {
                Some(Entry::Removed) => None,
                Some(Entry::Saved(bytes)) => match serde_json::from_slice::<Container>(&bytes) {
                    Ok(container) if container.id == id => Some(Loaded::Record(Box::new(container))),
                    // Never written so: the crc held. The file, then.
                    _ => {
                        tracing::error!(%id, "the journal's record of the container does not parse; reading its record file");
                        load_record(id.clone(), &self.persistent_record(&id))
                    }
                },
                None => load_record(id.clone(), &self.persistent_record(&id)),
            })
            .collect())
    }

    /// Ids of container directories in the work dir (not the spares).
    pub fn sandbox_ids(&self) -> Vec<String> {
        fs::read_dir(self.work_dir.join("containers"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| !name.starts_with(spare_trees::SPARE_PREFIX))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids of state dirs in the runtime dir.
    pub fn state_ids(&self) -> Vec<String> {
        entry_names(&self.runtime_dir.join("containers")).unwrap_or_default()
    }

    /// Whether the runtime dir was made in this boot. Records it for the
    /// current boot either way.
    pub fn same_boot(&self) -> Result<bool, StoreError> {
        let current = fs::read_to_string("/proc/sys/kernel/random/boot_id").map_err(io_error(
            "read",
            Path::new("/proc/sys/kernel/random/boot_id"),
        ))?;
        let path = self.runtime_dir.join("boot_id");
        let recorded = fs::read_to_string(&path).ok();
        write_atomic(&path, current.as_bytes(), Durability::CrashSafe)?;
        // Only a well-formed boot id says "another boot": a damaged file
        // proves nothing, and the pids' start times still guard each record.
        let well_formed = |r: &str| {
            r.trim().len() == 36 && r.trim().bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        };
        Ok(recorded.is_none_or(|r| {
            if !well_formed(&r) {
                tracing::warn!(file = %path.display(), "ignoring a damaged boot id record");
            }
            r == current || !well_formed(&r)
        }))
    }

    /// Loads every container record in the runtime dir. A record that cannot
    /// be read is quarantined and returned as such for its id, so the caller
    /// can say so and carry on with the rest.
    pub fn load_all(&self) -> Result<Vec<Loaded>, StoreError> {
        let dir = self.runtime_dir.join("containers");
        let mut out = Vec::new();
        for name in entry_names(&dir)? {
            let Ok(id) = ContainerId::new(name.as_str()) else {
                tracing::warn!(dir = %dir.join(&name).display(), "ignoring a state dir not named after a container id");
                continue;
            };
            let path = dir.join(&name).join(RECORD_FILE);
            out.extend(load_record(id, &path));
        }
        Ok(out)
    }

    /// The shim's record of how the container ended, if it wrote one.
    pub fn exit_record(&self, id: &ContainerId) -> Result<Option<ExitRecord>, StoreError> {
        ExitRecord::read(&self.state_dir(id)).map_err(|e| match e {
            ExitRecordError::Read { path, source } => StoreError::Io {
                op: "read",
                path,
                source,
            },
            ExitRecordError::Parse { path, source } => StoreError::Corrupt { path, source },
        })
    }

    /// Removes the container's state dir and its container dir (sandbox and
    /// logs), never following a link the container planted out of it and
    /// never entering a mount.
    pub fn remove(&self, id: &ContainerId) -> Result<(), StoreError> {
        for dir in [self.container_dir(id), self.state_dir(id)] {
            berth_confined::remove_tree(&dir).map_err(|e| StoreError::Remove {
                path: dir.clone(),
                source: e,
            })?;
        }
        // The record goes last: a crash before this line leaves a record
        // whose dirs are gone, which recovery removes again.
        let record = self.persistent_record(id);
        let records = self.work_dir.join("records");
        let quarantined = format!("{id}.json{QUARANTINE_SUFFIX}");
        for name in entry_names(&records).unwrap_or_default() {
            if name.starts_with(&quarantined) {
                let _ = fs::remove_file(records.join(name));
            }
        }
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &record)(e)),
        }
        self.journal()?.append_removed(id)
    }
}

/// The names of the entries of `dir` (none for a missing dir).
fn entry_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("read", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// The mode of a runtime dir berth creates, as `packaging/berth.tmpfiles`
/// makes `/run/berth`: others may pass through to the socket's dir, never
/// list it.
pub const RUNTIME_DIR_MODE: u32 = 0o711;

/// Creates a runtime dir (and missing parents) with [`RUNTIME_DIR_MODE`];
/// one that exists is left as it is.
pub fn create_runtime_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(RUNTIME_DIR_MODE)
        .create(dir)
}

/// What a write must survive (the one crash-safe write is berth-sys's).
pub use berth_sys::atomic::Durability;

/// Which copies of a record [`Store::save`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    /// Both, the work dir's with this durability (the runtime dir's copy
    /// is always crash-safe: a tmpfs does not outlive a reboot).
    Both(Durability),
    /// Only the runtime dir's: for a state that matters only while the
    /// host is up (a launch's pids, `running`). After a reboot the work
    /// dir's copy, written at create and at the end, is marked lost
    /// whatever state between it would have said (decision 0044).
    RuntimeOnly,
}

impl From<Durability> for Copies {
    fn from(durability: Durability) -> Copies {
        Copies::Both(durability)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new
/// content: [`berth_sys::atomic::write_atomic`] with the store's error.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> Result<(), StoreError> {
    berth_sys::atomic::write_atomic(path, bytes, durability).map_err(StoreError::from)
}

/// Writes the work dir's copy of a record: over the file in place when it
/// exists (decision 0059: no inode made, none freed, whose blocks a disk
/// mounted with `discard` would discard at once; a power loss or a crash
/// mid-write may leave it torn, and the journal is what recovery reads).
/// Otherwise it is made in `temp_dir` (a spare tree, whose empty
/// [`spare_trees::RECORD_PLACEHOLDER`] is written and renamed; the
/// container's dir, through a temp file: see [`write_atomic_in`]), or
/// beside it.
fn write_record_copy(path: &Path, bytes: &[u8], temp_dir: Option<&Path>) -> Result<(), StoreError> {
    let Some(temp_dir) = temp_dir else {
        return write_over(path, bytes);
    };
    if write_in_place(path, bytes)? {
        return Ok(());
    }
    let placeholder = temp_dir.join(spare_trees::RECORD_PLACEHOLDER);
    if write_in_place(&placeholder, bytes)? {
        return fs::rename(&placeholder, path).map_err(io_error("rename", path));
    }
    write_atomic_in(temp_dir, path, bytes, Durability::CrashSafe)
}

/// Writes `bytes` over the file at `path` ([`write_in_place`]), or, when
/// there is none, makes it crash-safe through a temp file beside it.
fn write_over(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if write_in_place(path, bytes)? {
        return Ok(());
    }
    write_atomic(path, bytes, Durability::CrashSafe)
}

/// Writes `bytes` over the file at `path`, not following a link, and cuts
/// what is left of a longer content; `Ok(false)` when there is no file.
fn write_in_place(path: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let file = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    match file {
        Ok(file) => file
            .write_all_at(bytes, 0)
            .and_then(|()| file.set_len(bytes.len() as u64))
            .map(|()| true)
            .map_err(io_error("write", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("open", path)(e)),
    }
}

/// [`berth_sys::atomic::write_atomic_in`] with the store's error.
fn write_atomic_in(
    temp_dir: &Path,
    path: &Path,
    bytes: &[u8],
    durability: Durability,
) -> Result<(), StoreError> {
    berth_sys::atomic::write_atomic_in(temp_dir, path, bytes, durability).map_err(StoreError::from)
}

impl From<berth_sys::atomic::AtomicWriteError> for StoreError {
    fn from(e: berth_sys::atomic::AtomicWriteError) -> StoreError {
        StoreError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// A record of container `id`, as a launch first saves it (for tests).
#[cfg(test)]
pub(crate) fn test_record(id: &str) -> Container {
    serde_json::from_value(serde_json::json!({
        "id": id, "state": "created", "pid": null, "command": ["true"],
        "env": {}, "workdir": null, "user": null, "rootfs": null, "resources": {},
        "isolation": [], "network": "host", "seccomp": "default",
        "created_at": "2026-12-06T10:00:00Z", "started_at": null,
        "finished_at": null, "exit_code": null, "signal": null, "reason": null,
        "limitation": null, "message": null,
        "sandbox": format!("/var/lib/berth/containers/{id}/sandbox"),
        "bundle": format!("/run/berth/containers/{id}/bundle"),
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::State;
    use berth_protocol::exit::EXIT_FILE;
    use std::collections::BTreeMap;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"one", Durability::Durable).unwrap();
        write_atomic(&path, b"two", Durability::CrashSafe).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_save_waits_only_for_saves_of_its_own_container() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("work"), &dir.path().join("run"));
        store.init().unwrap();
        let held = record_in(&store, "held");
        let other = (0..)
            .map(|i| format!("other{i}"))
            .find(|id| {
                SavingLocks::index(&ContainerId::new(id).unwrap()) != SavingLocks::index(&held.id)
            })
            .map(|id| record_in(&store, &id))
            .unwrap();
        let order = store.saving.hold(&held.id);
        // Another container's save, durable, goes through meanwhile.
        let (done, said) = std::sync::mpsc::channel();
        let saving = store.clone();
        std::thread::spawn(move || done.send(saving.save(&other, Durability::Durable)));
        let saved = said.recv_timeout(std::time::Duration::from_secs(60));
        assert!(matches!(saved, Ok(Ok(()))), "{saved:?}");
        // The held container's own saves wait: its lock is the one held.
        assert!(store.saving.0[SavingLocks::index(&held.id)]
            .try_lock()
            .is_err());
        drop(order);
        store.save(&held, Durability::Durable).unwrap();
        let loaded = store.load_persistent().unwrap();
        assert_eq!(loaded.len(), 2, "{loaded:?}");
    }

    #[test]
    fn a_record_is_synced_later_and_a_removed_one_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("work"), &dir.path().join("run"));
        store.init().unwrap();
        let container = record_in(&store, "synced");
        store.save(&container, Durability::CrashSafe).unwrap();
        let before = store.journal_flushes();
        store.sync_record(&container.id).unwrap();
        assert_eq!(store.journal_flushes(), before + 1);
        // On disk already: no flush more.
        store.sync_record(&container.id).unwrap();
        assert_eq!(store.journal_flushes(), before + 1);
        // Removed (`rm` right after the exit was published): nothing to do,
        // and nothing made again.
        store.remove(&container.id).unwrap();
        store.sync_record(&container.id).unwrap();
        assert!(!store.persistent_record(&container.id).exists());
    }

    #[test]
    fn after_a_power_loss_the_journal_says_what_each_record_was() {
        let dir = tempfile::tempdir().unwrap();
        let (work, run) = (dir.path().join("work"), dir.path().join("run"));
        let store = Store::new(&work, &run);
        store.init().unwrap();
        // `ended`: created, then its end saved and synced as `finalize` does.
        let mut ended = record_in(&store, "ended");
        store.save(&ended, Durability::Durable).unwrap();
        let as_created = fs::read(store.persistent_record(&ended.id)).unwrap();
        ended.state = State::Exited;
        ended.exit_code = Some(3);
        store.save(&ended, Durability::CrashSafe).unwrap();
        store.sync_record(&ended.id).unwrap();
        let created = record_in(&store, "created");
        store.save(&created, Durability::Durable).unwrap();
        let removed = record_in(&store, "removed");
        store.save(&removed, Durability::Durable).unwrap();
        store.remove(&removed.id).unwrap();
        // The power loss, as the disk may have kept the record files: the
        // end's rename lost, a create's file lost, a removal's unlink lost.
        fs::write(store.persistent_record(&ended.id), &as_created).unwrap();
        fs::remove_file(store.persistent_record(&created.id)).unwrap();
        let removed_file = store.persistent_record(&removed.id);
        fs::write(&removed_file, serde_json::to_vec(&removed).unwrap()).unwrap();
        // A record an agent before the journal made durable.
        let older = record("older");
        let older_file = store.persistent_record(&older.id);
        write_atomic(
            &older_file,
            &serde_json::to_vec(&older).unwrap(),
            Durability::Durable,
        )
        .unwrap();
        drop(store);

        // The host is back: the runtime dir is gone, the agent starts.
        fs::remove_dir_all(&run).unwrap();
        let store = Store::new(&work, &run);
        store.init().unwrap();
        let loaded: BTreeMap<String, Container> = store
            .load_persistent()
            .unwrap()
            .into_iter()
            .map(|loaded| match loaded {
                Loaded::Record(c) => (c.id.to_string(), *c),
                Loaded::Quarantined(q) => panic!("quarantined: {q:?}"),
            })
            .collect();
        assert_eq!(
            loaded.keys().map(String::as_str).collect::<Vec<_>>(),
            ["created", "ended", "older"]
        );
        assert_eq!(loaded["ended"].state, State::Exited);
        assert_eq!(loaded["ended"].exit_code, Some(3));
        assert_eq!(loaded["created"].state, State::Created);
        assert!(!removed_file.exists(), "the removal is carried out again");
    }

    #[test]
    fn a_damaged_boot_id_record_is_not_another_boot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("work"), &dir.path().join("run"));
        store.init().unwrap();
        let path = dir.path().join("run/boot_id");
        fs::write(&path, b"6d1f").unwrap();
        assert!(store.same_boot().unwrap());
        fs::write(&path, b"00000000-0000-0000-0000-000000000000\n").unwrap();
        assert!(!store.same_boot().unwrap());
        assert!(store.same_boot().unwrap());
    }

    #[test]
    fn container_trees_are_spread_where_the_filesystem_can() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("work"), &dir.path().join("run"));
        store.init().unwrap();
        let probe = fs::File::open(dir.path()).unwrap();
        let can = berth_sys::inode_flags::spread_subdirectories(&probe).unwrap();
        let containers = fs::File::open(dir.path().join("work/containers")).unwrap();
        assert_eq!(
            berth_sys::inode_flags::spreads_subdirectories(&containers).unwrap(),
            can,
            "containers/ is chattr +T where the filesystem has it"
        );
        // Only `containers/`: the records dir holds files, not trees.
        let records = fs::File::open(dir.path().join("work/records")).unwrap();
        assert!(!berth_sys::inode_flags::spreads_subdirectories(&records).unwrap());
    }

    /// A record of container `id`, as a launch saves it first, and its
    /// state dir, which the launch makes before.
    fn record_in(store: &Store, id: &str) -> Container {
        fs::create_dir_all(store.state_dir(&ContainerId::new(id).unwrap())).unwrap();
        record(id)
    }

    use super::test_record as record;

    /// The names in `dir`, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = (fs::read_dir(dir).unwrap().flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn container_dirs_are_roots_and_removal_takes_all_of_them() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("work"), &dir.path().join("run"));
        store.init().unwrap();
        let id = ContainerId::new("c1").unwrap();
        let c1 = record_in(&store, "c1");
        assert!(store
            .create_container(&c1, Durability::CrashSafe, Some((1000, 1000)), &[])
            .unwrap());
        assert!(!store
            .create_container(&c1, Durability::CrashSafe, None, &[])
            .unwrap());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.container_dir(&id)), 0o700);
        assert_eq!(mode(&store.log_dir(&id)), 0o700);
        assert_eq!(fs::metadata(store.sandbox(&id)).unwrap().uid(), 1000);
        assert_eq!(store.sandbox(&id).parent(), store.log_dir(&id).parent());
        // A link out of the sandbox is removed, not followed.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), "k").unwrap();
        std::os::unix::fs::symlink(outside.path(), store.sandbox(&id).join("out")).unwrap();
        store.remove(&id).unwrap();
        assert!(!store.container_dir(&id).exists());
        assert!(outside.path().join("keep").exists());
    }

    /// A store in a temp dir, once its spare trees are all made.
    fn store_with_spares() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("work"), &dir.path().join("run"));
        store.init().unwrap();
        store.keep_spare_trees();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.spare_trees.get().unwrap().ready() < spare_trees::SPARE_TREES {
            assert!(std::time::Instant::now() < deadline, "no spares made");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        (dir, store)
    }

    #[test]
    fn a_spare_tree_becomes_the_container_dir_and_never_replaces_one() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (dir, store) = store_with_spares();
        let containers = dir.path().join("work/containers");
        let spare_inodes = || -> Vec<u64> {
            (fs::read_dir(&containers).unwrap().flatten())
                .filter(|e| e.file_name().to_string_lossy().starts_with(".spare-"))
                .map(|e| e.metadata().unwrap().ino())
                .collect()
        };
        let before = spare_inodes();
        let id = ContainerId::new("c1").unwrap();
        let c1 = record_in(&store, "c1");
        assert!(store
            .create_container(&c1, Durability::Durable, Some((1000, 1000)), &[])
            .unwrap());
        let made = fs::metadata(store.container_dir(&id)).unwrap();
        assert!(before.contains(&made.ino()), "not a spare: {before:?}");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.container_dir(&id)), 0o700);
        assert_eq!(mode(&store.log_dir(&id)), 0o700);
        assert_eq!(fs::metadata(store.sandbox(&id)).unwrap().uid(), 1000);
        assert_eq!(store.sandbox_ids(), vec!["c1".to_string()], "spares listed");
        // An existing dir is refused and kept, the spare taken given back.
        fs::write(store.sandbox(&id).join("mine"), "m").unwrap();
        assert!(!store
            .create_container(&c1, Durability::CrashSafe, None, &[])
            .unwrap());
        assert!(store.sandbox(&id).join("mine").exists());
        store.remove(&id).unwrap();
        assert!(!store.container_dir(&id).exists());
    }

    #[test]
    fn records_are_written_through_the_container_dir_and_the_spare() {
        use std::os::unix::fs::MetadataExt;
        let (dir, store) = store_with_spares();
        let records = dir.path().join("work/records");
        let mut c1 = record_in(&store, "c1");
        assert!(store
            .create_container(
                &c1,
                Durability::Durable,
                None,
                &[("logs.json", b"{\"c1\":1}")]
            )
            .unwrap());
        let id = ContainerId::new("c1").unwrap();
        let container_dir = store.container_dir(&id);
        // The first record was the spare's placeholder, written and renamed
        // into `records`; the spare's other placeholder holds the first file.
        assert_eq!(names_in(&records), ["c1.json"]);
        assert_eq!(
            names_in(&container_dir),
            ["logs", "logs.json", "root", "sandbox"]
        );
        assert_eq!(
            fs::read(container_dir.join("logs.json")).unwrap(),
            b"{\"c1\":1}"
        );
        let copy: Container =
            serde_json::from_slice(&fs::read(records.join("c1.json")).unwrap()).unwrap();
        assert_eq!(copy.id, c1.id);
        let first = fs::metadata(records.join("c1.json")).unwrap().ino();
        // A later save writes over the record in place (decision 0059): no
        // temp file, the same inode, nothing left of the longer content.
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let watch = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        for dir in [&container_dir, &records] {
            watch.add_watch(dir, AddWatchFlags::IN_CREATE).unwrap();
        }
        c1.view.state = State::Exited;
        c1.view.labels.insert("long".into(), "x".repeat(4000));
        store.save(&c1, Durability::Durable).unwrap();
        c1.view.labels.clear();
        store.save(&c1, Durability::Durable).unwrap();
        assert!(
            matches!(watch.read_events(), Err(nix::errno::Errno::EAGAIN)),
            "no file made"
        );
        assert_eq!(names_in(&records), ["c1.json"]);
        assert_eq!(
            names_in(&container_dir),
            ["logs", "logs.json", "root", "sandbox"]
        );
        assert_eq!(fs::metadata(records.join("c1.json")).unwrap().ino(), first);
        let copy: Container = serde_json::from_slice(&fs::read(records.join("c1.json")).unwrap())
            .expect("the shorter record whole, no tail of the longer one");
        assert_eq!(copy.state, State::Exited);
        let loaded = store.load_persistent().unwrap();
        assert!(matches!(&loaded[..], [Loaded::Record(c)] if c.state == State::Exited));
        // Without a container dir (removed, or none made yet) the record is
        // written beside itself, as before.
        store.remove(&id).unwrap();
        assert!(!container_dir.exists());
        store
            .save(&record_in(&store, "c2"), Durability::CrashSafe)
            .unwrap();
        assert_eq!(names_in(&records), ["c2.json"]);
    }

    #[test]
    fn a_failed_first_record_gives_its_spare_back_untouched() {
        let (dir, store) = store_with_spares();
        let (containers, records) = (
            dir.path().join("work/containers"),
            dir.path().join("work/records"),
        );
        let spares = names_in(&containers);
        // The records dir replaced by a file: the record's rename fails.
        fs::remove_dir(&records).unwrap();
        fs::write(&records, b"").unwrap();
        let c1 = record_in(&store, "c1");
        assert!(store
            .create_container(&c1, Durability::CrashSafe, None, &[("logs.json", b"{}")])
            .is_err());
        // The spare taken is given back: every spare on disk is a ready
        // one again (a spare dropped would lie there, never used).
        let ready = || store.spare_trees.get().unwrap().ready();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ready() != names_in(&containers).len() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} ready of {:?}",
                ready(),
                names_in(&containers)
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // No container dir; every spare still there, holding only its dirs
        // and its empty placeholders.
        let now = names_in(&containers);
        assert!(spares.iter().all(|s| now.contains(s)), "{spares:?} {now:?}");
        for name in &now {
            assert!(name.starts_with(".spare-"), "{now:?}");
            let spare = containers.join(name);
            assert_eq!(
                names_in(&spare),
                [".record.json", "logs", "logs.json", "root", "sandbox"]
            );
            for file in [".record.json", "logs.json"] {
                assert_eq!(
                    fs::metadata(spare.join(file)).unwrap().len(),
                    0,
                    "{name}/{file}"
                );
            }
        }
        // The next launch goes as ever.
        fs::remove_file(&records).unwrap();
        fs::create_dir(&records).unwrap();
        assert!(store
            .create_container(&c1, Durability::CrashSafe, None, &[])
            .unwrap());
        assert!(names_in(&containers).contains(&"c1".to_string()));
    }

    #[test]
    fn missing_exit_record_is_none_and_corrupt_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("work"), &dir.path().join("run"));
        store.init().unwrap();
        let id = ContainerId::new("c1").unwrap();
        fs::create_dir_all(store.state_dir(&id)).unwrap();
        assert!(store.exit_record(&id).unwrap().is_none());
        fs::write(store.state_dir(&id).join(EXIT_FILE), b"{").unwrap();
        assert!(matches!(
            store.exit_record(&id),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
