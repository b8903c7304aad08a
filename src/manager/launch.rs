//! Launching a container: validate, create, prepare, bundle, shim, isolate,
//! go. Any failure undoes every step before it, so a failed launch leaves no
//! cgroup, directory, process or record behind.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use berth_isolator::{ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError};

use super::early_prepare::EarlyPrepare;
use super::end_notice::EndNotice;
use super::locked::locked;
use super::record_sync::RecordSync;
use super::self_join::SelfJoin;
use super::shim_client::{ShimArgs, ShimConnection, ShimError};
use super::shim_pool::Taken;
use super::{Manager, ManagerError, Slot};
use crate::bundle::{build_spec, hidden, write_bundle, BundleInput, NetworkMode};
use crate::config::{LogSettings, MAX_LOG_FILES, MAX_LOG_FILE_SIZE};
use crate::container::LogOverrides;
use crate::container::{Container, ContainerView, LaunchRequest, ProcessRef, State};
use crate::store::{Copies, Durability};
use crate::timestamp::Timestamp;
use crate::userns::{UsernsError, UsernsMode, BLOCK as USERNS_BLOCK};
use berth_protocol::bundle::SECCOMP_PROGRAM_FILE as PROGRAM_FILE;
use berth_protocol::{FailureKind, ShimMessage};

/// How long a failed launch waits for its processes to go.
const FAILED_LAUNCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a launch keeps of its shim once the command runs.
struct Started {
    /// The container's mount namespace (decision 0048).
    mount_namespace: Option<OwnedFd>,
    /// The shim's socket, for its word of the end (decision 0052).
    end_notice: EndNotice,
}

/// What runs beside the launch's own thread while it starts the shim
/// (decision 0046).
struct Beside<'a> {
    /// Starts the isolators' limitation watches, once the pid is isolated.
    start_watches: &'a dyn Fn(),
    /// The isolators' prepares on the helper thread.
    early: &'a EarlyPrepare,
    /// The overlay root being built as a detached mount.
    root_mount: &'a mut super::root::RootMountBuild,
    /// The cgroups the container's process moves itself into (decision
    /// 0047), if it does.
    self_join: Option<&'a mut SelfJoin>,
    /// The create record being made durable, waited for before the go
    /// (decision 0050).
    record_synced: Option<RecordSync>,
}

/// A validated launch.
pub(super) struct Plan {
    pub(super) container: Container,
    /// Whether the container gets a user namespace (its range is reserved
    /// once the id is known to be free).
    userns: bool,
    isolators: Vec<Arc<dyn Isolator>>,
    config: ContainerConfig,
    seccomp: crate::seccomp::SeccompSetting,
    /// The network, as parsed from the request (the record keeps its text).
    network: NetworkMode,
    /// The lower dirs of its overlay root, topmost first (an image's
    /// layers, or the `--rootfs` dir); `None`: no overlay.
    lower: Option<Vec<PathBuf>>,
    /// With an image: held until the root is mounted (see `image_gate`).
    _image_gate: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
}

impl From<IsolatorError> for ManagerError {
    fn from(e: IsolatorError) -> Self {
        match e {
            IsolatorError::InvalidConfig { field, message } => {
                ManagerError::Invalid { field, message }
            }
            IsolatorError::Conflict { message } => ManagerError::Conflict(message),
            IsolatorError::Refused { .. } => ManagerError::Refused(e.to_string()),
            IsolatorError::Unsupported { .. } => ManagerError::Unsupported(e.to_string()),
            other => ManagerError::Internal(other.to_string()),
        }
    }
}

impl From<UsernsError> for ManagerError {
    fn from(e: UsernsError) -> Self {
        match e {
            UsernsError::Exhausted { .. } => ManagerError::Conflict(e.to_string()),
            other => ManagerError::invalid("userns", other.to_string()),
        }
    }
}

impl Manager {
    /// Launches a container and returns it running.
    pub async fn launch(
        self: &Arc<Self>,
        request: LaunchRequest,
    ) -> Result<ContainerView, ManagerError> {
        berth_sys::launch_marks::mark("agent: launch begins");
        let manager = self.clone();
        let begun = std::time::Instant::now();
        let launched = crate::blocking::run(move || manager.launch_blocking(request))
            .await
            .map_err(|e| ManagerError::Internal(format!("launch task: {e}")))?;
        if launched.is_ok() {
            crate::metrics::AGENT.launched(begun.elapsed());
        }
        launched
    }

    fn launch_blocking(
        self: &Arc<Self>,
        mut request: LaunchRequest,
    ) -> Result<ContainerView, ManagerError> {
        let file_values = self.take_file_values(&mut request)?;
        let mut plan = self.plan(request, false)?;
        berth_sys::launch_marks::mark("agent: planned");
        let id = plan.container.id.clone();
        let slot = {
            let mut slots = locked(&self.slots);
            if slots.contains_key(&id) {
                return Err(ManagerError::Conflict(format!(
                    "container id {id} is in use"
                )));
            }
            if let Some(request) = &plan.container.request {
                Self::check_volume_users(&slots, request, &self.volume_store())?;
            }
            if plan.userns {
                plan.container.userns = Some(self.userns.reserve(id.as_str())?);
            }
            let slot = Slot::new(plan.container.clone());
            slots.insert(id.clone(), slot.clone());
            self.keep_file_values(id.as_str(), file_values);
            slot
        };
        match self.start(&plan, &slot, true) {
            Ok(container) => Ok(container.public()),
            Err(e) => {
                self.forget(&id, &slot);
                if let Err(remove) = self.store.remove(&id) {
                    tracing::error!(%id, "remove after failed launch: {remove}");
                }
                // A forced remove waiting for this launch sees it end.
                slot.record.send_modify(|c| c.state = State::Exited);
                self.userns.free(id.as_str());
                Err(e)
            }
        }
    }

    /// Checks the whole request without touching the host. A `relaunch`
    /// (a restart) is of a container whose id and dirs exist already.
    pub(super) fn plan(
        &self,
        mut request: LaunchRequest,
        relaunch: bool,
    ) -> Result<Plan, ManagerError> {
        // Everything the request alone decides, before anything is
        // touched: no image gate, no pull, no dir.
        let LaunchSpec {
            id,
            network,
            log,
            capabilities,
            tmp_size,
            userns,
            chosen,
            resources,
            table,
            form,
        } = self.validate(&request)?;
        // A restart launches the request as it was asked for, before the
        // image's config filled it in.
        let mut asked = request.clone();
        let image_gate = request
            .image
            .is_some()
            .then(|| self.runtime.block_on(self.image_gate.clone().read_owned()));
        let image = self.resolve_image(&request)?;
        if let Some(image) = &image {
            // A restart runs the very image this launch runs (its writable
            // layer lies over these layers), not what the tag names by then.
            asked.image = Some(super::root::pinned_reference(image));
            super::root::apply_image_config(&mut request, &image.config);
            super::request_checks::check(&request)?;
            // The image may have filled in the command, env, workdir: the
            // process fields are checked again as they will run.
            check_process_fields(&request, true)?;
        }
        let stored = Box::new(LaunchRequest {
            id: Some(id.to_string()),
            ..asked
        });

        let root_layers: Vec<&std::path::Path> = match (&image, &request.rootfs) {
            (Some(image), _) => image.layers.iter().map(PathBuf::as_path).collect(),
            (None, Some(rootfs)) => vec![rootfs.as_path()],
            (None, None) => vec![std::path::Path::new("/")],
        };
        let mut resolved = request.clone();
        super::root::resolve_user_name(&mut resolved, &root_layers)?;
        request.user = resolved.user;
        if let (Some(spec), Some(user)) = (&request.user_name, &request.user) {
            if user.uid > i32::MAX as u32 || user.gid() > i32::MAX as u32 {
                return Err(ManagerError::invalid(
                    "user_name",
                    format!("{spec:?} resolves to ids above 2^31-1"),
                ));
            }
        }
        // A `--rootfs` dir is the single lower dir of an overlay, except
        // with a user namespace (its root could not mount the overlay of
        // the agent's dirs): a read-only bind then, as before.
        let lower = match (&image, &request.rootfs) {
            (Some(image), _) => Some(image.layers.clone()),
            (None, Some(rootfs)) if request.userns.as_deref() != Some("auto") => {
                Some(vec![rootfs.clone()])
            }
            _ => None,
        };
        self.resolve_mounts(&request.mounts, lower.is_some())?;

        if userns == UsernsMode::Auto {
            self.check_userns(&request)?;
        }
        let seccomp = self.seccomp_setting(
            request.security_opt.as_ref(),
            &capabilities.apply(crate::bundle::DEFAULT_CAPABILITIES),
        )?;
        let isolators = self.isolators.select(&chosen);
        let isolation: Vec<String> = isolators.iter().map(|i| i.name().to_string()).collect();

        if !relaunch && locked(&self.slots).contains_key(&id) {
            return Err(ManagerError::Conflict(format!(
                "container id {id} is in use"
            )));
        }
        let container_dir = self.store.container_dir(&id);
        if !relaunch && container_dir.symlink_metadata().is_ok() {
            // Left by an earlier container of this id that was never
            // removed: refuse rather than mix two containers' files.
            return Err(ManagerError::Conflict(format!(
                "sandbox {} exists; remove the old container first",
                container_dir.display()
            )));
        }
        let container = Container {
            view: ContainerView {
                id: id.clone(),
                state: State::Created,
                pid: None,
                command: request.command,
                env: request.env,
                workdir: request.workdir,
                user: request
                    .user
                    .or_else(|| self.config.container.default_user()),
                rootfs: request.rootfs,
                resources,
                isolation,
                network: network.to_string(),
                log,
                capabilities,
                tmp_size: Some(tmp_size),
                seccomp: seccomp.mode().to_string(),
                created_at: Timestamp::now(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                signal: None,
                reason: None,
                limitation: None,
                message: None,
                sandbox: self.store.sandbox(&id),
                log_dir: Some(self.store.log_dir(&id)),
                bundle: self.store.bundle_dir(&id),
                userns: None,
                status: Default::default(),
                logs: None,
                init: request.init,
                labels: request.labels,
                auto_remove: request.auto_remove,
                restart: crate::restart_policy::RestartState {
                    policy: request.restart,
                    ..Default::default()
                },
                health_check: request.health,
                health: None,
                image: image.as_ref().map(|i| i.reference.clone()),
                image_digest: image.as_ref().map(|i| i.manifest_digest.clone()),
                read_only: request.read_only && lower.is_some(),
                exposed_ports: image
                    .as_ref()
                    .and_then(|i| i.config.exposed_ports.as_ref())
                    .map(|ports| ports.keys().cloned().collect())
                    .unwrap_or_default(),
                image_labels: image
                    .as_ref()
                    .and_then(|i| i.config.labels.clone())
                    .unwrap_or_default(),
                stdin: request.stdin,
                tty: request.tty,
            },
            shim: None,
            pid_start_time: None,
            final_usage: Default::default(),
            request: Some(stored),
        };
        let config = self.isolator_config(&container);
        for isolator in &isolators {
            isolator
                .validate(&config)
                .map_err(|e| super::update::named_as_asked(e, &table, &form))?;
        }
        Ok(Plan {
            container,
            userns: userns == UsernsMode::Auto,
            isolators,
            config,
            seccomp,
            network,
            lower,
            _image_gate: image_gate,
        })
    }

    /// Creates everything and starts the container. On error, whatever this
    /// function created is undone, except the dirs (the caller removes them).
    /// A restart (not `fresh`) reuses the container's dirs.
    pub(super) fn start(
        self: &Arc<Self>,
        plan: &Plan,
        slot: &Arc<Slot>,
        fresh: bool,
    ) -> Result<Container, ManagerError> {
        let mut container = plan.container.clone();
        let id = container.id.clone();
        let record_synced = if fresh {
            Some(self.create_dirs(&container)?)
        } else {
            self.store
                .save(&container, Durability::Durable)
                .map_err(|e| ManagerError::Internal(e.to_string()))?;
            None
        };
        berth_sys::launch_marks::mark("agent: record and dirs made");
        let overlay = match &plan.lower {
            Some(lower) => {
                let dirs = super::root::RootDirs::of(&self.store, &id);
                // A fresh container's dir has them (`Store::create_container`).
                // A restart keeps its writable layer; the work dir is made
                // anew (a `volatile` overlay refuses one it has used).
                if !fresh {
                    dirs.recreate_work().map_err(|e| {
                        ManagerError::Internal(format!("create the container's root dirs: {e}"))
                    })?;
                }
                Some((
                    dirs.overlay(lower.clone(), container.image.is_some()),
                    dirs.merged,
                ))
            }
            None => None,
        };
        // Built first by the launch's helper thread (below).
        let (mut root_mount, root_mount_job) = match &overlay {
            Some((overlay, _)) => {
                super::root::RootMountBuild::of(overlay, container.userns.is_some())
            }
            None => (super::root::RootMountBuild::none(), None),
        };

        // What each isolator says it contributes up front: those prepare on
        // a helper thread while the launch goes on (decision 0046), waited
        // for before the first isolate and before any cleanup.
        let mut announced = Vec::with_capacity(plan.isolators.len());
        let mut early_list = Vec::new();
        for isolator in &plan.isolators {
            let early = isolator
                .early_contribution(&id, &plan.config)
                .map_err(ManagerError::from)?;
            if let Some(c) = &early {
                early_list.push((isolator.clone(), c.clone()));
            }
            announced.push(early);
        }
        // The cgroups the process moves itself into, its isolators'
        // `isolate` skipped (decision 0047).
        let mut self_join = SelfJoin::plan(
            &id,
            &plan.isolators,
            &self.cgroups.mode,
            container.userns.is_some(),
        )?;
        // The attach that follows the shim's `forked` waits for an RCU grace
        // period unless a cgroup migration just happened: the helper makes
        // one once the cgroups are made (it holds the kernel's cgroup mutex
        // while it waits), in parallel with the bundle and the shim's start.
        // Not with a self-join: it would hold the kernel's cgroup mutex,
        // which the process' own move takes too, through a grace period.
        let warm_attach = {
            let manager = self.clone();
            let warm = self_join.is_none();
            move || {
                if warm {
                    (manager.cgroups.warm_attach)()
                }
            }
        };
        let early = EarlyPrepare::start(&id, &plan.config, early_list, root_mount_job, warm_attach);
        berth_sys::launch_marks::mark("agent: helper thread started");
        let mut prepared: Vec<&Arc<dyn Isolator>> = Vec::new();
        let undo_isolators = |prepared: &[&Arc<dyn Isolator>]| {
            early.settle();
            for isolator in prepared.iter().rev() {
                if let Err(e) = isolator.cleanup(&id) {
                    tracing::error!(%id, isolator = isolator.name(), "cleanup after failed launch: {e}");
                }
            }
        };
        let mut contribution = Contribution::default();
        // A plugin's cgroup settings are applied once every isolator has
        // prepared (the built-in that applies one may come after it).
        let mut plugin_settings = Vec::new();
        for (isolator, announced) in plan.isolators.iter().zip(announced) {
            let result = match announced {
                Some(c) => Ok(c),
                None => isolator.prepare(&id, &plan.config),
            };
            let result = result.map_err(ManagerError::from).and_then(|mut c| {
                if let Some(plugin) = self.plugin_config(isolator.name()) {
                    if !c.linux_resources.is_empty() {
                        let fragment = std::mem::take(&mut c.linux_resources);
                        plugin_settings.push((plugin, fragment));
                    }
                }
                contribution
                    .merge(c, isolator.name())
                    .map_err(|e| ManagerError::Internal(e.to_string()))
            });
            prepared.push(isolator);
            if let Err(e) = result {
                undo_isolators(&prepared);
                return Err(e);
            }
        }
        if !plugin_settings.is_empty() {
            // Applied through the built-ins' cgroups: those must exist.
            if let Err(e) = early.finish() {
                undo_isolators(&prepared);
                return Err(e);
            }
        }
        for (plugin, fragment) in plugin_settings {
            let applied = self.apply_plugin_settings(
                &id,
                plan,
                &prepared,
                plugin,
                &fragment,
                &mut contribution,
            );
            if let Err(e) = applied {
                undo_isolators(&prepared);
                return Err(e);
            }
        }

        // The limitation watches start once the pid is isolated, while the
        // container still sets itself up (decision 0038): their registration
        // (an eventfd in `cgroup.event_control` on v1, 1-10 ms) is off the
        // launch's critical path, and nothing the command does is unwatched.
        berth_sys::launch_marks::mark("agent: isolators prepared");
        let start_watches = || self.watch_limitations(&id, slot, &plan.isolators);
        let launched = self.run_shim(
            &mut container,
            &contribution,
            plan,
            overlay.as_ref().map(|(o, merged)| (o, merged.as_path())),
            Beside {
                start_watches: &start_watches,
                early: &early,
                root_mount: &mut root_mount,
                self_join: self_join.as_mut(),
                record_synced,
            },
        );
        let Started {
            mount_namespace,
            end_notice,
        } = match launched {
            Ok(started) => started,
            Err(e) => {
                // The shim is gone (or never started) and with it the process:
                // wait until the kernel is done with it before removing cgroups.
                if let Some(process) = super::container_process(&container) {
                    wait_gone(&process, true);
                }
                // The shim records the failure in the state dir before it exits;
                // the dir is removed after that, not before.
                if let Some(shim) = container.shim {
                    wait_gone(&shim, false);
                }
                undo_isolators(&prepared);
                return Err(e);
            }
        };
        *locked(&slot.mount_namespace) = mount_namespace;

        container.state = State::Running;
        // A restart is done launching (see `restart::end_interrupted_restart`).
        container.restart.relaunching = false;
        self.events.container(
            &container,
            if fresh { "create" } else { "restart" },
            Default::default(),
        );
        // `running` says nothing a reboot would keep true: the work dir's
        // copy stays as created until the end is recorded (decision 0044).
        self.publish(slot, container.clone(), Copies::RuntimeOnly);
        // A limitation reported before the publication found no process to
        // end in the slot: end it now.
        if locked(&slot.limitation).is_some() {
            if let Some(process) = super::container_process(&container) {
                let _ = process.signal(libc::SIGKILL);
            }
        }
        self.start_health_checker(&container);
        let shim = container.shim.expect("a started container has a shim");
        self.follow_exit(id, shim, Some(end_notice));
        Ok(container)
    }

    /// Creates a fresh container's record and dirs. The work dir's record
    /// is written crash-safe here (a process crash keeps it) and made
    /// durable by the returned [`RecordSync`] while the launch goes on; the
    /// go waits for it (decision 0050).
    fn create_dirs(self: &Arc<Self>, container: &Container) -> Result<RecordSync, ManagerError> {
        let internal = |what: &str, path: &PathBuf, e: std::io::Error| {
            ManagerError::Internal(format!("{what} {}: {e}", path.display()))
        };
        let state_dir = self.store.state_dir(&container.id);
        for dir in [&state_dir, &self.store.isolator_dir(&container.id)] {
            std::fs::create_dir_all(dir).map_err(|e| internal("create", dir, e))?;
        }
        // The record comes before the sandbox, so that a crash leaves no
        // sandbox that no record explains (the store sees to it); it is
        // durable before the command runs, so that a power loss leaves
        // none in which a command ran (decisions 0014, 0050). The log
        // metadata, for log shippers tailing the segments (issue 14), is
        // written in the tree before it becomes the container's dir.
        let log_meta = crate::logs::meta::LogMeta::of(container).to_bytes();
        let created = self
            .store
            .create_container(
                container,
                Durability::CrashSafe,
                sandbox_owner(container),
                &[(crate::logs::meta::META_FILE, &log_meta)],
            )
            .map_err(|e| ManagerError::Internal(e.to_string()))?;
        let synced = {
            let (manager, id) = (self.clone(), container.id.clone());
            RecordSync::start(move || manager.store.sync_record(&id))
        };
        if !created {
            // Left by an earlier container of the same id that was never
            // removed: refuse rather than mix two containers' files.
            return Err(ManagerError::Conflict(format!(
                "sandbox {} exists; remove the old container first",
                self.store.container_dir(&container.id).display()
            )));
        }
        Ok(synced)
    }

    /// Writes the bundle, starts the shim, isolates the pid and lets the
    /// command run. Fills in the container's pids and start time. Returns
    /// the container's mount namespace, if the shim sent it, to hold until
    /// its end is told (decision 0048).
    fn run_shim(
        &self,
        container: &mut Container,
        contribution: &Contribution,
        plan: &Plan,
        overlay: Option<(&berth_protocol::bundle::RootOverlay, &std::path::Path)>,
        beside: Beside<'_>,
    ) -> Result<Started, ManagerError> {
        let Beside {
            start_watches,
            early,
            root_mount,
            mut self_join,
            record_synced,
        } = beside;
        let (isolators, seccomp, network) = (&plan.isolators, &plan.seccomp, &plan.network);
        let internal = |e: &dyn std::fmt::Display| ManagerError::Internal(e.to_string());
        let seccomp = self.resolved_seccomp(
            seccomp,
            &container
                .capabilities
                .apply(crate::bundle::DEFAULT_CAPABILITIES),
        )?;
        let contribution = &self.with_request_mounts(container, contribution, overlay.is_some())?;
        // The container's own root: a `--rootfs` dir (the shim mounts its
        // overlay over it in the container's mount namespace, so `runc`
        // still runs the bundle unchanged, on the dir read-only), an image
        // overlay's mount point; `None` is the host's root.
        let rootfs = container
            .rootfs
            .as_deref()
            .or(overlay.map(|(_, merged)| merged));
        let mut env = container.env.clone();
        env.extend(self.secret_env(container)?);
        let mut spec = build_spec(&BundleInput {
            id: container.id.as_str(),
            command: &container.command,
            env: &env,
            workdir: container.workdir.as_deref(),
            user: container.user,
            rootfs,
            sandbox: &container.sandbox,
            cgroups_path: (self.cgroups.cgroups_path)(&container.id),
            contribution,
            network,
            nofile: crate::bundle::inherited_nofile(),
            hidden: self.hidden_dirs(),
            hidden_paths: match rootfs {
                None => hidden::expand(&self.config.container.hidden_paths),
                Some(_) => Vec::new(),
            },
            run_files: match rootfs {
                None => hidden::run_files(),
                Some(_) => Vec::new(),
            },
            bundle_dir: &container.bundle,
            capabilities: &container.capabilities,
            tmp_size: container.tmp_size.unwrap_or(self.config.container.tmp_size),
            userns: container.userns.as_ref(),
            seccomp: seccomp.as_deref().map(|resolved| &resolved.spec),
            init: container.init,
            overlay: overlay.map(|(o, _)| o),
            read_only: container.read_only,
            stdin: container.stdin,
            tty: container.tty,
        })
        .map_err(|e| internal(&e))?;
        berth_sys::launch_marks::mark("agent: spec built");
        let files = self.mount_files(
            container,
            sandbox_owner(container).unwrap_or((0, 0)),
            &mut spec,
        )?;
        write_bundle(&container.bundle, &spec).map_err(|e| internal(&e))?;
        berth_sys::launch_marks::mark("agent: config written");
        // The filter compiled once per profile, for the shim to load.
        if let Some(seccomp) = &seccomp {
            let path = container.bundle.join(PROGRAM_FILE);
            std::fs::write(&path, seccomp.program.to_bytes())
                .map_err(|e| internal(&format!("write {}: {e}", path.display())))?;
        }

        berth_sys::launch_marks::mark("agent: bundle written");
        let shim_path = self.config.shim_path();
        let state_dir = self.store.state_dir(&container.id);
        let root_mount = root_mount.take();
        let shim_args = ShimArgs {
            shim: &shim_path,
            id: container.id.as_str(),
            bundle: &container.bundle,
            state_dir: &state_dir,
            log_dir: container.log_dir(),
            log: &container.log,
            files: &files,
            root_mount: root_mount.as_ref(),
            cgroups: self_join.as_ref().map(|j| (j.dirs.as_slice(), &j.ready)),
        };
        let mut shim = self.shim_for(&shim_args).map_err(|e| internal(&e))?;
        berth_sys::launch_marks::mark("agent: handed to the shim");
        drop((files, root_mount));

        // `Forked` comes while the container still sets itself up: it is
        // isolated meanwhile (decision 0035); `Ready` follows.
        let (shim_pid, pid, ready) = match shim.receive().map_err(|e| internal(&e))? {
            ShimMessage::Forked { shim_pid, pid } => (shim_pid, pid, false),
            ShimMessage::Ready { shim_pid, pid } => (shim_pid, pid, true),
            ShimMessage::Failed { message, kind } => return Err(launch_failed(kind, message)),
            ShimMessage::Running => return Err(internal(&"shim said running before go")),
            ShimMessage::Exited { .. } => return Err(internal(&"shim said exited before go")),
            ShimMessage::Idle { .. } => return Err(internal(&"shim said idle after its handover")),
        };
        berth_sys::launch_marks::mark("agent: heard forked");
        // Both are identified now, before anything can exit: the container
        // waits for our go, and the shim waits for the container.
        container.shim = ProcessRef::of(shim_pid);
        container.pid = Some(pid);
        container.pid_start_time = ProcessRef::of(pid).map(|p| p.start_time);
        if container.shim.is_none() || container.pid_start_time.is_none() {
            // A setup that failed at once: the shim says why.
            return Err(shim_reason_or(
                &mut shim,
                ready,
                internal(&format!(
                    "shim {shim_pid} or container process {pid} vanished during setup"
                )),
            ));
        }
        // Its processes do not outlive a reboot: the runtime dir's copy is
        // enough (decision 0044), and the attach below does not wait for
        // the work dir's filesystem.
        self.store
            .save(container, Copies::RuntimeOnly)
            .map_err(|e| internal(&e))?;

        // Dropping the connection (on error) makes the shim kill the
        // container.
        early.finish()?;
        // The cgroups exist: the process may move itself into those it
        // joins (before it confines itself); the isolators move it into
        // the others.
        let isolated = (|| {
            if let Some(join) = self_join.as_mut() {
                join.release()
                    .map_err(|e| format!("tell the container its cgroups exist: {e}"))?;
            }
            for isolator in isolators {
                if self_join
                    .as_ref()
                    .is_some_and(|j| j.replaces(isolator.as_ref()))
                {
                    continue;
                }
                isolator
                    .isolate(&container.id, pid)
                    .map_err(|e| format!("isolator {}: {e}", isolator.name()))?;
            }
            Ok::<(), String>(())
        })();
        if let Err(e) = isolated {
            // Isolated during its setup, the process may have gone
            // because the setup failed: the shim's reason comes first.
            let failed = shim_reason_or(&mut shim, ready, ManagerError::Internal(e));
            // Dropping the connection makes the shim kill the container.
            drop(shim);
            return Err(failed);
        }
        berth_sys::launch_marks::mark("agent: isolated");
        start_watches();
        if let Some(synced) = record_synced {
            synced.wait()?;
        }
        berth_sys::launch_marks::mark("agent: record durable");
        launch_gate(&container.id);
        // Nothing is left to do here before the command runs: the go goes
        // now, and the shim holds it until the container says it is ready
        // (decision 0047), saving the round trip through this thread.
        if let Err(e) = shim.go() {
            // A setup that failed meanwhile (a mount escape, say) closed
            // the shim's end: its reason comes first.
            return Err(shim_reason_or(&mut shim, ready, internal(&e)));
        }
        berth_sys::launch_marks::mark("agent: go sent");
        if !ready {
            match shim.receive().map_err(|e| internal(&e))? {
                ShimMessage::Ready { .. } => {}
                ShimMessage::Failed { message, kind } => return Err(launch_failed(kind, message)),
                other => return Err(internal(&format!("shim said {other:?} before ready"))),
            }
        }
        match shim.receive().map_err(|e| internal(&e))? {
            ShimMessage::Running => {}
            ShimMessage::Failed { message, kind } => return Err(launch_failed(kind, message)),
            ShimMessage::Exited { .. } => return Err(internal(&"shim said exited before running")),
            ShimMessage::Ready { .. } | ShimMessage::Forked { .. } | ShimMessage::Idle { .. } => {
                return Err(internal(&"shim said ready twice"))
            }
        }
        berth_sys::launch_marks::mark("agent: heard running");
        container.started_at = Some(Timestamp::now());
        Ok(Started {
            mount_namespace: shim.take_mount_namespace(),
            end_notice: shim.into_end_notice(),
        })
    }
}

impl Manager {
    /// The `[[plugins]]` entry of isolator `name`, if it is a plugin.
    fn plugin_config(&self, name: &str) -> Option<&crate::plugins::PluginConfig> {
        self.config.plugins.iter().find(|p| p.name == name)
    }

    /// Applies plugin `plugin`'s cgroup settings (its `linux_resources`,
    /// see `plugins::cgroup_settings`) through the built-in isolators that
    /// own them, and records them in the bundle's `linux.resources`. A
    /// setting refused (unknown key, out of range, set by the request
    /// too, its isolator not in this container's isolation, refused by
    /// that isolator) fails the launch for a `required` plugin and is
    /// logged and skipped for an `optional` one.
    fn apply_plugin_settings(
        &self,
        id: &ContainerId,
        plan: &Plan,
        prepared: &[&Arc<dyn Isolator>],
        plugin: &crate::plugins::PluginConfig,
        fragment: &serde_json::Map<String, serde_json::Value>,
        contribution: &mut Contribution,
    ) -> Result<(), ManagerError> {
        use crate::plugins::cgroup_settings::{set_by_request, translate};
        let name = &plugin.name;
        let applied = (|| {
            let settings = translate(fragment)
                .map_err(|e| ManagerError::Internal(format!("plugin {name}: {e}")))?;
            let mut sections: std::collections::BTreeMap<
                &str,
                serde_json::Map<String, serde_json::Value>,
            > = Default::default();
            for setting in &settings {
                if set_by_request(&plan.config.resources, setting) {
                    return Err(ManagerError::invalid(
                        format!("resources.{}.{}", setting.isolator, setting.field),
                        format!(
                            "plugin {name} sets it too (linux_resources.{}); leave it to the plugin",
                            setting.key
                        ),
                    ));
                }
                let section = sections.entry(setting.isolator).or_insert_with(|| {
                    // The request's own fields stay (an update of one field
                    // must not clear the others).
                    plan.config
                        .resources
                        .raw_section(setting.isolator)
                        .cloned()
                        .unwrap_or_default()
                });
                section.insert(setting.field.to_string(), setting.value.clone());
            }
            for (isolator, section) in sections {
                let Some(builtin) = prepared.iter().find(|i| i.name() == isolator) else {
                    // No built-in isolator owns that controller for this
                    // container: berth made no cgroup to apply it to, the
                    // plugin owns the controller (a built-in run out of
                    // process, say). Recorded in the bundle only.
                    tracing::debug!(%id, plugin = %name, isolator, "cgroup settings recorded, not applied: no such isolator in this container's isolation");
                    continue;
                };
                let resources = berth_isolator::Resources::with_section(
                    isolator,
                    &serde_json::Value::Object(section),
                );
                builtin.update(id, &resources).map_err(|e| {
                    ManagerError::Internal(format!(
                        "plugin {name}: linux_resources for {isolator}: {e}"
                    ))
                })?;
            }
            Ok(())
        })();
        match (applied, plugin.policy) {
            (Ok(()), _) => {}
            (Err(e), crate::plugins::PluginPolicy::Optional) => {
                tracing::warn!(%id, plugin = %name, "cgroup settings skipped (optional plugin): {e}");
                return Ok(());
            }
            (Err(e), crate::plugins::PluginPolicy::Required) => return Err(e),
        }
        // What was applied is what the bundle records.
        for (group, keys) in fragment {
            let entry = contribution
                .linux_resources
                .entry(group.clone())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let (Some(entry), Some(keys)) = (entry.as_object_mut(), keys.as_object()) {
                for (key, value) in keys {
                    entry.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(())
    }

    /// The launch's shim: an idle one from the pool, handed the launch
    /// (decision 0043), or, when none is ready or the one taken died idle,
    /// one exec'd for it.
    fn shim_for(&self, args: &ShimArgs<'_>) -> Result<ShimConnection, ShimError> {
        loop {
            let idle = match self.shim_pool.take() {
                Taken::Idle(idle) => idle,
                Taken::Successor(asked) => match asked.idle() {
                    Ok(idle) => idle,
                    Err(e) => {
                        tracing::warn!(
                            id = args.id,
                            "successor of an idle shim: {e}; starting one"
                        );
                        break;
                    }
                },
                Taken::None => break,
            };
            let pid = idle.pid;
            match ShimConnection::hand_over(idle, args) {
                Ok(shim) => return Ok(shim),
                Err(e) => tracing::warn!(id = args.id, "idle shim {pid}: {e}; trying another"),
            }
        }
        ShimConnection::spawn(args)
    }
}

/// What the request alone decides, checked without touching the host
/// (no image gate, no pull, no dir, no cgroup): the first step of a launch
/// (see `Manager::validate`), its values used by the rest.
pub(super) struct LaunchSpec {
    pub id: ContainerId,
    pub network: NetworkMode,
    pub log: LogSettings,
    pub capabilities: crate::bundle::capabilities::CapabilityChanges,
    pub tmp_size: u64,
    pub userns: UsernsMode,
    /// The isolators chosen, by name.
    pub chosen: Vec<String>,
    /// The resources in the agent's v1 form.
    pub resources: serde_json::Map<String, serde_json::Value>,
    pub table: berth_isolator::ResourceTable,
    pub form: berth_isolator::RequestForm,
}

impl Manager {
    /// Checks everything the request alone decides: its fields' syntax and
    /// ranges, the network, restart, health and secret settings, the
    /// isolation and the resources. Touches nothing: a request refused
    /// here leaves no trace, and no image is pulled for it. What depends
    /// on the image (its config's command, env, user) is checked again
    /// once the image is resolved.
    pub(super) fn validate(&self, request: &LaunchRequest) -> Result<LaunchSpec, ManagerError> {
        super::request_checks::check(request)?;
        let network = super::request_checks::network(request)?;
        super::restart::check_request(request)?;
        super::health::check_request(request)?;
        crate::secrets::request::check_recorded(request)?;
        let id = match &request.id {
            Some(id) => ContainerId::new(id.clone())
                .map_err(|e| ManagerError::invalid("id", e.to_string()))?,
            None => random_id(),
        };
        // Without an image the command must be there now; an image's config
        // may still supply it.
        check_process_fields(request, request.image.is_none())?;
        if let Some(rootfs) = &request.rootfs {
            if !rootfs.is_absolute() {
                return Err(ManagerError::invalid(
                    "rootfs",
                    format!("must be an absolute path, got {}", rootfs.display()),
                ));
            }
            match std::fs::metadata(rootfs) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(ManagerError::invalid(
                        "rootfs",
                        format!("{} is not a directory", rootfs.display()),
                    ))
                }
                Err(e) => {
                    return Err(ManagerError::invalid(
                        "rootfs",
                        format!("{}: {e}", rootfs.display()),
                    ))
                }
            }
        }
        let log = effective_log_settings(&self.config.log, request.log.as_ref())?;
        let capabilities = request
            .capabilities
            .as_ref()
            .map(|c| c.normalized())
            .transpose()
            .map_err(|e| ManagerError::invalid(e.field, e.to_string()))?
            .unwrap_or_default();
        if let Some(message) = crate::bundle::capabilities::not_grantable(&capabilities) {
            return Err(ManagerError::invalid("capabilities.add", message));
        }
        let tmp_size = request.tmp_size.unwrap_or(self.config.container.tmp_size);
        if tmp_size < crate::config::MIN_TMP_SIZE {
            return Err(ManagerError::invalid(
                "tmp_size",
                format!("must be at least {} bytes", crate::config::MIN_TMP_SIZE),
            ));
        }
        let userns = UsernsMode::parse(request.userns.as_deref())?;

        let offered = self.isolators.names();
        let chosen = match &request.isolation {
            Some(names) => {
                for name in names {
                    if !offered.contains(name) {
                        return Err(ManagerError::invalid(
                            "isolation",
                            format!(
                                "unknown or unoffered isolator {name:?} (offered: {})",
                                offered.join(", ")
                            ),
                        ));
                    }
                }
                names.clone()
            }
            None => offered,
        };
        let table = self.isolators.resource_table();
        let (resources, form) = table.from_request(&request.resources)?;
        for (section, _) in resources.sections() {
            let isolator = self
                .isolators
                .section_owner(section)
                .map_or(section.to_string(), |i| i.name().to_string());
            if !chosen.contains(&isolator) {
                return Err(ManagerError::invalid(
                    form.field_of(section),
                    format!("needs the {isolator} isolator, which this container does not use"),
                ));
            }
        }
        let resources = table.to_v1(&resources);
        Ok(LaunchSpec {
            id,
            network,
            log,
            capabilities,
            tmp_size,
            userns,
            chosen,
            resources,
            table,
            form,
        })
    }
}

/// The fields of the process to run: a command (when `need_command`), no
/// NUL anywhere, valid variable names, an absolute working directory.
fn check_process_fields(request: &LaunchRequest, need_command: bool) -> Result<(), ManagerError> {
    if need_command && (request.command.is_empty() || request.command[0].is_empty()) {
        return Err(ManagerError::invalid(
            "command",
            "must name a program to run",
        ));
    }
    if request.command.iter().any(|arg| arg.contains('\0')) {
        return Err(ManagerError::invalid(
            "command",
            "arguments must not contain NUL",
        ));
    }
    for key in request.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(ManagerError::invalid(
                "env",
                format!("bad variable name {key:?}"),
            ));
        }
    }
    if request.env.values().any(|v| v.contains('\0')) {
        return Err(ManagerError::invalid("env", "values must not contain NUL"));
    }
    if let Some(workdir) = &request.workdir {
        if !workdir.starts_with('/') || workdir.contains('\0') {
            return Err(ManagerError::invalid(
                "workdir",
                format!("must be an absolute path, got {workdir:?}"),
            ));
        }
    }
    Ok(())
}

/// The agent's log settings with a container's overrides applied.
fn effective_log_settings(
    agent: &LogSettings,
    overrides: Option<&LogOverrides>,
) -> Result<LogSettings, ManagerError> {
    let Some(overrides) = overrides else {
        return Ok(agent.clone());
    };
    let settings = LogSettings {
        max_size: overrides.max_size.unwrap_or(agent.max_size),
        max_files: overrides.max_files.unwrap_or(agent.max_files),
        compress: overrides.compress.unwrap_or(agent.compress),
        mode: overrides.mode.unwrap_or(agent.mode),
    };
    if !(4096..=MAX_LOG_FILE_SIZE).contains(&settings.max_size) {
        return Err(ManagerError::invalid(
            "log.max_size",
            format!("must be between 4096 and {MAX_LOG_FILE_SIZE} bytes"),
        ));
    }
    if !(1..=MAX_LOG_FILES).contains(&settings.max_files) {
        return Err(ManagerError::invalid(
            "log.max_files",
            format!("must be between 1 and {MAX_LOG_FILES}"),
        ));
    }
    Ok(settings)
}

impl Manager {
    /// The agent's own directories, which a container on the host's root
    /// must not see: work dir, runtime dir and the socket's dir. A dir inside
    /// another one listed is covered by it.
    fn hidden_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [
            Some(self.config.work_dir.clone()),
            Some(self.config.runtime_dir.clone()),
            self.config.socket.parent().map(PathBuf::from),
        ]
        .into_iter()
        .flatten()
        .filter(|d| d.is_absolute() && d.parent().is_some())
        .collect();
        dirs.sort();
        dirs.dedup();
        let all = dirs.clone();
        dirs.retain(|d| !all.iter().any(|other| other != d && d.starts_with(other)));
        dirs
    }
}

/// The host owner of a new sandbox: the container's user, as the host sees
/// it (through the container's id mapping, if it has one).
fn sandbox_owner(container: &Container) -> Option<(u32, u32)> {
    let user = container.user.map(|u| (u.uid, u.gid()));
    match &container.userns {
        Some(mapping) => {
            let (uid, gid) = user.unwrap_or((0, 0));
            mapping.host_ids(uid, gid)
        }
        None => user,
    }
}

impl Manager {
    /// What `userns: auto` needs: ranges, a kernel that allows user
    /// namespaces, a user inside the mapped ids and a rootfs the container's
    /// root can reach.
    fn check_userns(&self, request: &LaunchRequest) -> Result<(), ManagerError> {
        self.userns.check_available()?;
        let user = request
            .user
            .or_else(|| self.config.container.default_user());
        if let Some(user) = user {
            if user.uid >= USERNS_BLOCK || user.gid() >= USERNS_BLOCK {
                return Err(ManagerError::invalid(
                    "user",
                    format!("with userns auto, uid and gid must be below {USERNS_BLOCK}"),
                ));
            }
        }
        if let Some(rootfs) = &request.rootfs {
            crate::userns::check_reachable(rootfs)
                .map_err(|e| ManagerError::invalid("rootfs", format!("with userns auto, {e}")))?;
        }
        Ok(())
    }
}

/// The shim's own reason for a setup that failed before `Ready` (read
/// now, if it sent one), else `otherwise`: what the agent saw go wrong
/// (the process gone, a refused move or go) follows from the shim's.
fn shim_reason_or(shim: &mut ShimConnection, ready: bool, otherwise: ManagerError) -> ManagerError {
    if !ready {
        if let Ok(ShimMessage::Failed { message, kind }) = shim.receive() {
            return launch_failed(kind, message);
        }
    }
    otherwise
}

/// A launch failure, by the kind the shim gave it: a command that cannot
/// be exec'd, a working directory missing in the container or a mount
/// target leading out of it is the caller's error.
fn launch_failed(kind: FailureKind, message: String) -> ManagerError {
    match kind {
        FailureKind::Workdir => ManagerError::invalid("workdir", message),
        FailureKind::MountEscape => ManagerError::invalid("mounts", message),
        FailureKind::Exec | FailureKind::Setup => ManagerError::LaunchFailed {
            message,
            user_error: kind.is_user_error(),
        },
    }
}

/// A hook for tests of what happens during a launch: with
/// `BERTH_TEST_LAUNCH_GATE=DIR` in the agent's environment, a launch whose
/// container process is ready creates `DIR/<id>.waiting` and goes on only
/// once `DIR/<id>.go` exists. Without the variable it does nothing.
fn launch_gate(id: &ContainerId) {
    let Some(dir) = std::env::var_os("BERTH_TEST_LAUNCH_GATE").map(PathBuf::from) else {
        return;
    };
    let _ = std::fs::write(dir.join(format!("{id}.waiting")), b"");
    let go = dir.join(format!("{id}.go"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !go.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits until a process has gone, killing it if asked, so that its
/// cgroups and files can go.
fn wait_gone(process: &ProcessRef, kill: bool) {
    if !process.end(kill, FAILED_LAUNCH_TIMEOUT) {
        tracing::warn!(
            pid = process.pid,
            "process still alive after a failed launch"
        );
    }
}

/// A random 12-hex-digit id, as Docker's short ids.
fn random_id() -> ContainerId {
    let mut bytes = [0u8; 6];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = urandom.read_exact(&mut bytes);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    ContainerId::new(hex).expect("hex is a valid id")
}
