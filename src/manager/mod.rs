//! The container manager: the lifecycle state machine behind the API.
//!
//! Every container has a slot holding its latest record in a `watch`
//! channel, so waiters and followers learn of changes without polling. The
//! record on disk (see `store`) is the truth; memory is a cache of it.

mod exec;
pub use exec::ExecResult;
mod exit;
mod gc;
mod launch;
mod locked;
pub use gc::{GcRemoved, GcReport};
mod attach;
mod early_prepare;
mod end_notice;
mod exec_stream;
mod health;
pub mod images;
mod reattach;
mod record_sync;
mod recover;
mod request_checks;
mod restart;
mod root;
mod scrape;
mod seccomp;
mod secrets;
mod self_join;
mod shim_client;
pub mod shim_pool;
mod update;
mod volumes;
pub use exec_stream::{ExecCreated, ExecStream};

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use locked::locked;
use std::time::Duration;

use berth_isolator::{ContainerId, Isolator, Limitation};
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::container::{Container, ContainerView, State};
use crate::process::parse_signal;
use crate::store::{Copies, Store};

/// How long the manager waits for a SIGKILLed process to be gone before it
/// goes on cleaning up without it.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `rm --force` waits for a killed container to end.
const FORCE_REMOVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `rm --force` waits for a launch under way to finish.
const LAUNCH_WAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors the manager returns; the API maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// 400: the request is wrong; `field` names what.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// 404
    #[error("no container with id {0}")]
    NotFound(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 409: an isolator refused a live update; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// 400: the host cannot do what was asked (a missing controller or knob).
    #[error("{0}")]
    Unsupported(String),
    /// 400 or 500: the container could not be started; nothing was kept.
    #[error("launch failed: {message}")]
    LaunchFailed { message: String, user_error: bool },
    /// 500
    #[error("{0}")]
    Internal(String),
}

impl ManagerError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManagerError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One container's live state.
struct Slot {
    record: watch::Sender<Container>,
    /// The limitation a watcher reported, kept for the exit.
    limitation: Mutex<Option<Limitation>>,
    /// Set once the end is being recorded (see `Manager::finalize`).
    finalized: AtomicBool,
    /// True from the publication of the end until the isolators' cleanup
    /// after it is done: a remove waits for it (decision 0044).
    cleanup_pending: watch::Sender<bool>,
    /// The running container's mount namespace, from its shim: held so that
    /// the last reference, and with it the teardown of the container's
    /// mounts (two RCU grace periods), goes after the end is told, not in the
    /// exiting process before anyone hears of it (decision 0048).
    mount_namespace: Mutex<Option<std::os::fd::OwnedFd>>,
}

impl Slot {
    fn new(container: Container) -> Arc<Slot> {
        Arc::new(Slot {
            record: watch::channel(container).0,
            limitation: Mutex::new(None),
            finalized: AtomicBool::new(false),
            cleanup_pending: watch::channel(false).0,
            mount_namespace: Mutex::new(None),
        })
    }

    fn get(&self) -> Container {
        self.record.borrow().clone()
    }

    /// Waits until an ended container's isolators are cleaned up: its end
    /// is published before that cleanup (decisions 0044, 0047), so a remove
    /// or a relaunch that follows a `wait` waits for it here.
    async fn cleaned(&self, id: &str) -> Result<(), ManagerError> {
        let mut pending = self.cleanup_pending.subscribe();
        tokio::time::timeout(FORCE_REMOVE_TIMEOUT, pending.wait_for(|p| !*p))
            .await
            .map_err(|_| {
                ManagerError::Internal(format!("container {id}'s cleanup is still under way"))
            })?
            .map_err(|_| ManagerError::NotFound(id.to_string()))?;
        Ok(())
    }
}

/// The isolators offered by this agent, in the order they apply.
pub struct Isolators {
    pub ordered: Vec<Arc<dyn Isolator>>,
}

impl Isolators {
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Isolator>> {
        self.ordered.iter().find(|i| i.name() == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.ordered.iter().map(|i| i.name().to_string()).collect()
    }

    /// The resource sections the isolators declare.
    pub fn resource_table(&self) -> berth_isolator::ResourceTable {
        berth_isolator::ResourceTable::new(self.ordered.iter().filter_map(|i| i.resource_section()))
    }

    /// The isolator that owns resource section `section`.
    pub fn section_owner(&self, section: &str) -> Option<&Arc<dyn Isolator>> {
        self.ordered
            .iter()
            .find(|i| i.resource_section().is_some_and(|s| s.name == section))
    }

    /// The isolators named in `names`, in the agent's order.
    fn select(&self, names: &[String]) -> Vec<Arc<dyn Isolator>> {
        self.ordered
            .iter()
            .filter(|i| names.iter().any(|n| n == i.name()))
            .cloned()
            .collect()
    }
}

/// Host facts the manager reports and uses to build bundles.
pub struct HostCgroups {
    /// `v1` or `v2`.
    pub mode: String,
    /// The OCI `cgroupsPath` for a container.
    pub cgroups_path: Box<dyn Fn(&ContainerId) -> String + Send + Sync>,
    /// The names of the container cgroups below the cgroup root, in any
    /// hierarchy.
    pub children: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    /// SIGKILLs every process in a container's cgroups.
    pub kill: Box<dyn Fn(&ContainerId) + Send + Sync>,
    /// A no-op migration of the agent itself, run on a helper thread while
    /// a launch starts its shim, so that the launch's attach finds the
    /// kernel's migration lock warm (decision 0038). Best effort. Not run
    /// for a launch whose process moves itself (decision 0047).
    pub warm_attach: Box<dyn Fn() + Send + Sync>,
}

/// The container manager.
pub struct Manager {
    config: AgentConfig,
    store: Store,
    isolators: Isolators,
    cgroups: HostCgroups,
    slots: Mutex<HashMap<ContainerId, Arc<Slot>>>,
    update_lock: tokio::sync::Mutex<()>,
    runtime: tokio::runtime::Handle,
    /// The id ranges of containers with a user namespace.
    userns: crate::userns::Userns,
    /// Seccomp programs compiled so far, by profile (see `seccomp`).
    seccomp_programs: seccomp::ProgramCache,
    default_seccomp: seccomp::DefaultSeccomp,
    /// Set when the agent stops: restart policies record their next
    /// attempt for the next agent instead of making it.
    shutting_down: AtomicBool,
    /// The image store and registry client, opened at first use.
    images: std::sync::OnceLock<Arc<crate::images::Images>>,
    /// Held (shared) by a launch from its image's resolution until its root
    /// is mounted, and (exclusive) by image removal and GC, so that no
    /// layer is pruned between being unpacked and being mounted.
    image_gate: Arc<tokio::sync::RwLock<()>>,
    /// Secret and config file values, in memory only (see `secrets`).
    files: crate::secrets::live::LiveFiles,
    /// The event stream (decision 0031).
    events: Arc<crate::events::EventBus>,
    /// Shims started ahead of launches (decision 0043).
    shim_pool: Arc<shim_pool::ShimPool>,
}

/// Sends signal `number` to `container`'s first process (a pidfd of the
/// pid with its recorded start time, so never a reused pid): 409 when it
/// is gone.
fn signal_first_process(container: &Container, number: i32) -> Result<(), ManagerError> {
    let id = &container.id;
    let delivered = container_process(container)
        .map(|p| p.signal(number))
        .transpose()
        .map_err(|e| ManagerError::Internal(format!("signal container {id}: {e}")))?;
    if delivered != Some(true) {
        return Err(ManagerError::Conflict(format!(
            "container {id} is not running"
        )));
    }
    Ok(())
}

impl Manager {
    /// A manager over the given state; call [`Manager::recover`] next.
    pub fn new(config: AgentConfig, isolators: Isolators, cgroups: HostCgroups) -> Arc<Manager> {
        let store = Store::new(&config.work_dir, &config.runtime_dir);
        let userns = crate::userns::Userns::new(&config.userns);
        let events = crate::events::EventBus::new(&config.events);
        let shim_pool = shim_pool::ShimPool::start(
            config.shim_path(),
            config.runtime_dir.clone(),
            config.container.idle_shims,
        );
        Arc::new(Manager {
            userns,
            config,
            store,
            isolators,
            cgroups,
            slots: Mutex::new(HashMap::new()),
            update_lock: tokio::sync::Mutex::new(()),
            runtime: tokio::runtime::Handle::current(),
            seccomp_programs: seccomp::ProgramCache::default(),
            default_seccomp: seccomp::DefaultSeccomp::default(),
            shutting_down: AtomicBool::new(false),
            images: std::sync::OnceLock::new(),
            image_gate: Default::default(),
            files: Default::default(),
            events,
            shim_pool,
        })
    }

    /// The agent's event stream.
    pub fn events(&self) -> &Arc<crate::events::EventBus> {
        &self.events
    }

    /// Gives the manager its image store (once, at agent start, before
    /// any request: the store's `ingest/` is emptied when it is opened).
    pub fn set_images(&self, images: Arc<crate::images::Images>) {
        let _ = self.images.set(images);
    }

    /// The agent's images (store and registry client; `[images]` config).
    pub fn images(&self) -> Result<&Arc<crate::images::Images>, ManagerError> {
        if let Some(images) = self.images.get() {
            return Ok(images);
        }
        let store = crate::images::ImageStore::open(&self.config.work_dir)
            .map_err(|e| ManagerError::Internal(format!("open the image store: {e}")))?;
        let images = crate::images::Images::new(store, self.config.images.pull_options());
        Ok(self.images.get_or_init(|| Arc::new(images)))
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn slot(&self, id: &str) -> Result<Arc<Slot>, ManagerError> {
        let not_found = || ManagerError::NotFound(id.to_string());
        let id = ContainerId::new(id).map_err(|_| not_found())?;
        locked(&self.slots).get(&id).cloned().ok_or_else(not_found)
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Vec<ContainerView> {
        let mut all: Vec<ContainerView> = locked(&self.slots)
            .values()
            .map(|slot| self.with_health(slot.get()).public())
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    /// One container, with its isolators' status while it runs.
    pub fn get(&self, id: &str) -> Result<ContainerView, ManagerError> {
        let mut container = self.with_health(self.slot(id)?.get());
        match crate::logs::counters::read(&self.store.state_dir(&container.id)) {
            Ok(counters) => container.logs = counters,
            Err(e) => tracing::warn!(id = %container.id, "{e}"),
        }
        if container.state == State::Running {
            for isolator in self.isolators.select(&container.isolation) {
                match isolator.status(&container.id) {
                    Ok(status) if !status.is_empty() => {
                        container.status.insert(
                            isolator.name().to_string(),
                            serde_json::Value::Object(status),
                        );
                    }
                    Ok(_) => {}
                    // The container ended and its isolator let go of it
                    // between the record's read and this call: normal.
                    Err(e @ berth_isolator::IsolatorError::UnknownContainer { .. }) => {
                        tracing::debug!(id = %container.id, isolator = isolator.name(), "status: {e}")
                    }
                    Err(e) => {
                        tracing::warn!(id = %container.id, isolator = isolator.name(), "status: {e}")
                    }
                }
            }
        }
        Ok(container.public())
    }

    /// The container's state dir, where its shim records its end
    /// (`berth_protocol::exit`).
    pub fn state_dir(&self, id: &ContainerId) -> std::path::PathBuf {
        self.store.state_dir(id)
    }

    /// A receiver that sees every change of the container's record.
    pub fn subscribe(&self, id: &str) -> Result<watch::Receiver<Container>, ManagerError> {
        Ok(self.slot(id)?.record.subscribe())
    }

    /// Waits until the container has ended (at once for one whose state is
    /// unknown).
    pub async fn wait(&self, id: &str) -> Result<ContainerView, ManagerError> {
        let mut rx = self.subscribe(id)?;
        let container = rx
            .wait_for(|c| c.state == State::Exited || c.state == State::Unknown)
            .await
            .map_err(|_| ManagerError::NotFound(id.to_string()))?
            .clone();
        Ok(container.public())
    }

    /// Sends a signal (`TERM`, `SIGKILL`, `9`) to the container's first process.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), ManagerError> {
        let number = parse_signal(signal)
            .ok_or_else(|| ManagerError::invalid("signal", format!("unknown signal {signal:?}")))?;
        let slot = self.slot(id)?;
        let container = slot.get();
        if container.state != State::Running {
            return Err(ManagerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        self.mark_stopped_by_user(&slot);
        signal_first_process(&container, number)?;
        self.events.container(
            &container,
            "kill",
            crate::events::attributes([("signal", number.into())]),
        );
        Ok(())
    }

    /// Stops a container: SIGTERM, then SIGKILL once `grace` has passed
    /// without it ending; returns its record once it has ended. An ended
    /// container is returned as it is; one still launching is a conflict.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<ContainerView, ManagerError> {
        let slot = self.slot(id)?;
        // Also cancels a pending restart of an ended container.
        self.mark_stopped_by_user(&slot);
        let container = slot.get();
        match container.state {
            State::Exited | State::Unknown => return Ok(container.public()),
            State::Running => {}
            _ => {
                return Err(ManagerError::Conflict(format!(
                    "container {id} is still starting"
                )))
            }
        }
        // It may end between the check and the signal: not an error.
        if let Some(process) = container_process(&container) {
            let _ = process.signal(libc::SIGTERM);
        }
        if let Ok(ended) = tokio::time::timeout(grace, self.wait(id)).await {
            return ended.inspect(|c| self.events.container(c, "stop", Default::default()));
        }
        if let Some(process) = container_process(&container) {
            let _ = process.signal(libc::SIGKILL);
        }
        tokio::time::timeout(FORCE_REMOVE_TIMEOUT, self.wait(id))
            .await
            .map_err(|_| {
                ManagerError::Internal(format!("container {id} did not end after SIGKILL"))
            })?
            .inspect(|c| self.events.container(c, "stop", Default::default()))
    }

    /// Removes an ended container (or, with `force`, kills it first): its
    /// sandbox, bundle and records. A forced remove during the launch waits
    /// for the launch, then kills what it started.
    pub async fn remove(&self, id: &str, force: bool) -> Result<(), ManagerError> {
        let slot = self.slot(id)?;
        // Cancels a pending restart first: a restart that claimed the
        // container already makes it "starting" below.
        self.mark_stopped_by_user(&slot);
        let mut container = slot.get();
        if container.state == State::Unknown {
            if !force {
                return Err(ManagerError::Conflict(format!(
                    "container {id}'s state is unknown (its record was unreadable); remove it with force to kill whatever runs in its cgroups"
                )));
            }
            return self.remove_unknown(&slot, container).await;
        }
        if container.state != State::Exited {
            if !force {
                return Err(ManagerError::Conflict(format!(
                    "container {id} is {}; stop it first (berth stop) or remove it with force (berth rm -f)",
                    if container.state == State::Running {
                        "running"
                    } else {
                        "starting"
                    }
                )));
            }
            if container.state == State::Created {
                // Its pids are not known before the launch is done; a failed
                // launch ends it as exited.
                let mut updates = slot.record.subscribe();
                container = tokio::time::timeout(
                    LAUNCH_WAIT_TIMEOUT,
                    updates.wait_for(|c| c.state != State::Created),
                )
                .await
                .map_err(|_| ManagerError::Internal(format!("container {id} is still launching")))?
                .map_err(|_| ManagerError::NotFound(id.to_string()))?
                .clone();
            }
            if container.state == State::Running {
                if let Some(process) = container_process(&container) {
                    let _ = process.signal(libc::SIGKILL);
                }
            }
            let mut updates = slot.record.subscribe();
            tokio::time::timeout(
                FORCE_REMOVE_TIMEOUT,
                updates.wait_for(|c| c.state == State::Exited),
            )
            .await
            .map_err(|_| {
                ManagerError::Internal(format!("container {id} did not end after SIGKILL"))
            })?
            .map_err(|_| ManagerError::NotFound(id.to_string()))?;
        }
        // Their cgroups, files and handles go first.
        slot.cleaned(id).await?;
        let store = self.store.clone();
        let cid = container.id.clone();
        tokio::task::spawn_blocking(move || store.remove(&cid))
            .await
            .map_err(|e| ManagerError::Internal(e.to_string()))?
            .map_err(|e| ManagerError::Internal(e.to_string()))?;
        self.forget(&container.id, &slot);
        self.events
            .container(&container, "destroy", Default::default());
        // Only now: until its files are gone, its ids own them.
        self.userns.free(container.id.as_str());
        Ok(())
    }

    /// Removes a container whose record was unreadable: SIGKILLs whatever
    /// runs in its cgroups, cleans up every isolator, removes its files.
    async fn remove_unknown(
        &self,
        slot: &Arc<Slot>,
        container: Container,
    ) -> Result<(), ManagerError> {
        let id = container.id.clone();
        let kill_id = id.clone();
        let store = self.store.clone();
        let isolators = self.isolators.ordered.clone();
        (self.cgroups.kill)(&kill_id);
        tokio::task::spawn_blocking(move || {
            // The killed processes take a moment to leave their cgroups.
            let deadline = std::time::Instant::now() + KILL_TIMEOUT;
            for isolator in isolators.iter().rev() {
                while let Err(e) = isolator.cleanup(&kill_id) {
                    if std::time::Instant::now() > deadline {
                        tracing::error!(id = %kill_id, isolator = isolator.name(), "cleanup: {e}");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            // Its shim, if it still runs, records the end in the state dir
            // as it goes: remove the dir after that.
            while !matches!(store.exit_record(&kill_id), Ok(Some(_)))
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            // It may still be finishing its logs (compressing): try again
            // while files appear under the dirs being removed.
            let deadline = std::time::Instant::now() + KILL_TIMEOUT;
            loop {
                match store.remove(&kill_id) {
                    Err(e) if std::time::Instant::now() < deadline => {
                        tracing::debug!(id = %kill_id, "remove, trying again: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    result => break result,
                }
            }
        })
        .await
        .map_err(|e| ManagerError::Internal(e.to_string()))?
        .map_err(|e| ManagerError::Internal(e.to_string()))?;
        self.forget(&id, slot);
        self.events
            .container(&container, "destroy", Default::default());
        // Its files are gone: the ids that owned them are free.
        self.userns.free(id.as_str());
        Ok(())
    }

    /// Drops a container's slot, unless a new container of the same id has
    /// taken it meanwhile.
    fn forget(&self, id: &ContainerId, slot: &Arc<Slot>) {
        let mut slots = locked(&self.slots);
        if slots.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(id);
            self.forget_files(id.as_str());
        }
    }

    /// Stops every running container: SIGTERM, then SIGKILL after `grace`,
    /// and waits until each has ended and been recorded.
    pub async fn stop_all(&self, grace: Duration) {
        // The slots' records, not `list()`: the public view has no start
        // times to check pids against.
        let running: Vec<Container> = locked(&self.slots)
            .values()
            .map(|slot| slot.get())
            .filter(|c| c.state == State::Running)
            .collect();
        tracing::info!(count = running.len(), "stopping containers");
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for container in &running {
            if let Some(process) = container_process(container) {
                let _ = process.signal(libc::SIGTERM);
            }
        }
        let waits = running.iter().map(|c| async move {
            let id = c.id.as_str();
            if tokio::time::timeout(grace, self.wait(id)).await.is_err() {
                // Not `kill`: the agent's own stop is no user's, and leaves
                // restart policies in force for the next agent.
                if let Some(process) = container_process(c) {
                    let _ = process.signal(libc::SIGKILL);
                }
                let _ = tokio::time::timeout(FORCE_REMOVE_TIMEOUT, self.wait(id)).await;
            }
        });
        futures_util::future::join_all(waits).await;
    }

    /// Every isolator's usage for a container, keyed by isolator name; for
    /// an ended one the figures read at its end, once they are (its end is
    /// told before, decision 0051).
    pub async fn stats(
        &self,
        id: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ManagerError> {
        let slot = self.slot(id)?;
        let exited = slot.record.borrow().state == State::Exited;
        if exited {
            slot.cleaned(id).await?;
        }
        let container = slot.get();
        if container.state == State::Exited && !container.final_usage.is_empty() {
            return Ok(container.final_usage);
        }
        if container.state != State::Running {
            return Err(ManagerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        let mut out = serde_json::Map::new();
        for isolator in self.isolators.select(&container.isolation) {
            let usage = isolator
                .usage(&container.id)
                .map_err(|e| ManagerError::Internal(format!("{} usage: {e}", isolator.name())))?;
            out.insert(
                isolator.name().to_string(),
                serde_json::Value::Object(usage),
            );
        }
        Ok(out)
    }

    /// What this agent is and offers.
    pub fn info(&self) -> crate::wire::info::Info {
        let isolators = self
            .isolators
            .ordered
            .iter()
            .map(|i| {
                let mut details = i.describe();
                // Its name is the agent's to give.
                details.remove("name");
                // The resource section it owns, and its flat `/v1` keys.
                if let Some(section) = i.resource_section() {
                    details.insert(
                        "resources".into(),
                        serde_json::json!({
                            "section": section.name,
                            "flat_keys": section.flat_keys,
                        }),
                    );
                }
                crate::wire::info::IsolatorInfo {
                    name: i.name().to_string(),
                    details,
                }
            })
            .collect();
        crate::wire::info::Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            cgroup_mode: self.cgroups.mode.clone(),
            isolators,
            work_dir: self.config.work_dir.clone(),
            runtime_dir: self.config.runtime_dir.clone(),
            userns: self.userns.describe(),
        }
    }

    /// Writes and publishes a record.
    fn publish(&self, slot: &Slot, container: Container, copies: impl Into<Copies>) {
        self.save_record(&container, copies);
        self.tell(slot, container);
    }

    /// Saves `container`'s record; a failure is logged (the slot stays the
    /// truth for the API).
    fn save_record(&self, container: &Container, copies: impl Into<Copies>) {
        if let Err(e) = self.store.save(container, copies) {
            tracing::error!(id = %container.id, "save record: {e}");
        }
    }

    /// The event stream and the slot's watchers learn of `container`.
    fn tell(&self, slot: &Slot, container: Container) {
        self.events
            .record_changed(&slot.record.borrow(), &container);
        slot.record.send_replace(container);
    }
}

/// The container's first process, if it is recorded.
fn container_process(container: &Container) -> Option<crate::container::ProcessRef> {
    Some(crate::container::ProcessRef {
        pid: container.pid?,
        start_time: container.pid_start_time?,
    })
}

/// Now, as RFC 3339 with nanoseconds, in UTC.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
