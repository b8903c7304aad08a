//! Rebuilding the manager from the runtime dir when the agent starts.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_isolator::{ContainerConfig, ContainerId, RecoveredContainer};

use super::exit::cleanup_isolators;
use super::locked::locked;
use super::{container_process, Manager, Slot, KILL_TIMEOUT};
use crate::container::{reason, Container, ContainerView, State};
use crate::store::{Loaded, Quarantined};
use crate::timestamp::Timestamp;

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Running containers reattached.
    pub reattached: usize,
    /// Containers that ended while the agent was away.
    pub ended_meanwhile: usize,
    /// Half-launched containers destroyed.
    pub destroyed: usize,
    /// Containers that had already ended.
    pub ended_before: usize,
    /// Containers whose runtime state was gone (host reboot).
    pub lost: usize,
    /// Containers whose record could not be read, listed as `unknown`.
    pub quarantined: usize,
}

/// Marks a container whose end nobody saw because the host went down.
fn mark_agent_lost(container: &mut Container) {
    container.state = State::Exited;
    container.reason = Some(reason::AGENT_LOST.into());
    container.message = Some(
        "the host rebooted (or the agent's runtime dir was lost) while the container ran; its end was not seen"
            .into(),
    );
    container.pid = None;
    container.shim = None;
}

impl Manager {
    /// Loads every recorded container: reattaches running ones, records the
    /// end of those that exited meanwhile, destroys half-launched ones.
    pub fn recover(self: &Arc<Self>) -> Result<Recovery, String> {
        self.store.init().map_err(|e| e.to_string())?;
        self.store.keep_spare_trees();
        self.recover_volumes();
        self.events.load(&self.config.work_dir);
        let mut containers = Vec::new();
        let mut quarantined = Vec::new();
        for loaded in self.store.load_all().map_err(|e| e.to_string())? {
            match loaded {
                Loaded::Record(container) => containers.push(*container),
                Loaded::Quarantined(q) => quarantined.push(q),
            }
        }
        let same_boot = self.store.same_boot().map_err(|e| e.to_string())?;
        let mut lost = Vec::new();
        if !same_boot {
            // The runtime dir outlived a reboot (it is not a tmpfs): its pids
            // name nothing of ours any more.
            for container in containers.iter_mut().filter(|c| c.state != State::Exited) {
                mark_agent_lost(container);
                lost.push(container.clone());
            }
        }
        // Records whose runtime state is gone: the host rebooted, or the
        // runtime dir was wiped. Their sandboxes stay for inspection and GC.
        // A container whose runtime record is quarantined is not one of them.
        let mut known: BTreeSet<ContainerId> = containers.iter().map(|c| c.id.clone()).collect();
        known.extend(quarantined.iter().map(|q| q.id.clone()));
        for loaded in self.store.load_persistent().map_err(|e| e.to_string())? {
            match loaded {
                Loaded::Record(mut container) if !known.contains(&container.id) => {
                    if container.state != State::Exited {
                        mark_agent_lost(&mut container);
                        lost.push((*container).clone());
                    }
                    if let Err(e) = std::fs::create_dir_all(self.store.state_dir(&container.id)) {
                        tracing::error!(id = %container.id, "recreate state dir: {e}");
                    }
                    containers.push(*container);
                }
                Loaded::Quarantined(q) if !known.contains(&q.id) => quarantined.push(q),
                _ => {}
            }
        }
        let orphans = self.remove_leaks(&containers, &quarantined);

        let recovered: Vec<RecoveredContainer> = containers
            .iter()
            .filter(|c| c.state != State::Exited)
            .map(|c| RecoveredContainer {
                config: self.isolator_config(c),
                pid: c
                    .pid
                    .filter(|_| container_process(c).is_some_and(|p| p.is_alive())),
            })
            .collect();
        // One call with both lists: an isolator may treat anything it finds
        // that is in neither as a leftover.
        for isolator in &self.isolators.ordered {
            if let Err(e) = isolator.recover(&recovered, &orphans) {
                tracing::error!(isolator = isolator.name(), "recover: {e}");
            }
        }

        let mut summary = Recovery::default();
        for q in quarantined {
            let slot = Slot::new(self.quarantined_record(q));
            slot.finalized.store(true, Ordering::SeqCst);
            let id = slot.get().id.clone();
            locked(&self.slots).insert(id, slot);
            summary.quarantined += 1;
        }
        for container in &lost {
            tracing::warn!(id = %container.id, "container lost with the host's runtime state (reboot?)");
            self.events.record_changed(
                &Container {
                    view: ContainerView {
                        state: State::Running,
                        ..container.view.clone()
                    },
                    ..container.clone()
                },
                container,
            );
            let mut message = container.message.clone();
            cleanup_isolators(
                &self.isolators.select(&container.isolation),
                &container.id,
                &mut message,
            );
            summary.lost += 1;
        }
        for container in containers {
            let id = container.id.clone();
            match container.state {
                State::Exited => {
                    let slot = Slot::new(container);
                    slot.finalized.store(true, Ordering::SeqCst);
                    locked(&self.slots).insert(id, slot);
                    summary.ended_before += 1;
                }
                State::Unknown => {
                    tracing::error!(%id, "a record says its state is unknown; left alone");
                    locked(&self.slots).insert(id, Slot::new(container));
                    summary.quarantined += 1;
                }
                State::Created if container.restart.relaunching => {
                    self.end_interrupted_restart(container);
                    summary.ended_meanwhile += 1;
                }
                State::Created => {
                    self.destroy_half_launched(container);
                    summary.destroyed += 1;
                }
                State::Running => {
                    let shim = container.shim.filter(|s| s.is_alive());
                    let slot = Slot::new(container.clone());
                    locked(&self.slots).insert(id.clone(), slot.clone());
                    match shim {
                        Some(shim) => {
                            self.reattach(&container, &slot, shim);
                            summary.reattached += 1;
                        }
                        None => {
                            self.finalize(&id, None);
                            summary.ended_meanwhile += 1;
                        }
                    }
                }
            }
        }
        self.recover_userns();
        self.resume_lifecycle();
        Ok(summary)
    }

    /// Holds the id ranges of every container still known (running or not
    /// yet removed) and of sandboxes no readable record explains, so that
    /// no new container gets ids that own a live container's files.
    fn recover_userns(&self) {
        let containers: Vec<Container> = locked(&self.slots)
            .values()
            .map(|slot| slot.get())
            .collect();
        // A quarantined record (state unknown) says nothing of its ids: its
        // sandbox's owner does.
        let known: BTreeSet<&str> = containers
            .iter()
            .filter(|c| c.state != State::Unknown)
            .map(|c| c.id.as_str())
            .collect();
        let owners: Vec<(String, u32)> = self
            .store
            .sandbox_ids()
            .into_iter()
            .filter(|id| !known.contains(id.as_str()))
            .filter_map(|id| {
                let sandbox = self.store.sandbox(&ContainerId::new(id.clone()).ok()?);
                let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(sandbox).ok()?);
                Some((id, uid))
            })
            .collect();
        self.userns.recover(
            containers
                .iter()
                .filter_map(|c| Some((c.id.as_str(), c.userns.as_ref()?))),
            owners,
        );
    }

    /// A container caught between "created" and "running" by a crash: its
    /// launch never completed, so nobody was told it exists. End it and
    /// remove every trace.
    fn destroy_half_launched(&self, container: Container) {
        let id = container.id.clone();
        tracing::warn!(%id, "destroying a container whose launch was interrupted");
        if let Some(process) = container_process(&container) {
            process.end(true, KILL_TIMEOUT);
        }
        if let Some(shim) = container.shim {
            shim.end(false, KILL_TIMEOUT);
        }
        let mut message = None;
        cleanup_isolators(
            &self.isolators.select(&container.isolation),
            &id,
            &mut message,
        );
        if let Err(e) = self.store.remove(&id) {
            tracing::error!(%id, "remove half-launched container: {e}");
        }
    }

    /// Finds cgroups and mounts of containers berth no longer knows, says so
    /// in the log, unmounts the mounts and kills the cgroups' processes.
    /// Returns the ids whose cgroups the isolators must remove (as orphans).
    /// A quarantined container counts as live: what it may run is left alone.
    fn remove_leaks(
        &self,
        containers: &[Container],
        quarantined: &[Quarantined],
    ) -> Vec<ContainerId> {
        let unknown = quarantined.iter().map(|q| q.id.to_string());
        let live: BTreeSet<String> = containers
            .iter()
            .filter(|c| c.state != State::Exited)
            .map(|c| c.id.to_string())
            .chain(unknown.clone())
            .collect();
        let known: BTreeSet<String> = containers
            .iter()
            .map(|c| c.id.to_string())
            .chain(unknown)
            .collect();
        // Mounts below a sandbox of a container that does not run (a loop
        // mount left by a crash, say) pin the sandbox: detach them.
        let sandboxes = self.config.work_dir.join("containers");
        if let Ok(mounts) = berth_sys::mountinfo::read() {
            let mut leaked: Vec<std::path::PathBuf> = mounts
                .into_iter()
                .map(|mount| mount.mount_point)
                .filter(|point| {
                    point
                        .strip_prefix(&sandboxes)
                        .ok()
                        .and_then(|rest| rest.components().next())
                        .is_some_and(|id| !live.contains(&*id.as_os_str().to_string_lossy()))
                })
                .collect();
            // Deepest first, so nested mounts go before their parents.
            leaked.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for point in leaked {
                tracing::warn!(mount = %point.display(), "unmounting a leaked mount of an unknown or ended container");
                if let Err(e) = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
                    tracing::error!(mount = %point.display(), "unmount: {e}");
                }
            }
        }
        let orphans: Vec<ContainerId> = (self.cgroups.children)()
            .into_iter()
            .filter(|name| !live.contains(name))
            .filter_map(|name| ContainerId::new(name).ok())
            .collect();
        for orphan in &orphans {
            tracing::warn!(id = %orphan, "removing the leaked cgroups of a container berth does not run");
            (self.cgroups.kill)(orphan);
        }
        // A state dir with no record (not even a quarantined one): the
        // launch was interrupted before its first record was written, and
        // so before it made a sandbox, cgroup or process.
        for id in self.store.state_ids() {
            if !known.contains(&id) {
                let dir = self.config.runtime_dir.join("containers").join(&id);
                tracing::warn!(dir = %dir.display(), "removing the state dir of a launch interrupted before its first record");
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::error!(dir = %dir.display(), "remove: {e}");
                }
            }
        }
        for id in self.store.sandbox_ids() {
            if !known.contains(&id) {
                tracing::warn!(%id, "a sandbox with no container record is left in place for inspection");
            }
        }
        orphans
    }

    /// The record shown for a container whose record could not be read:
    /// its id, state `unknown` and what happened. Never saved.
    fn quarantined_record(&self, q: Quarantined) -> Container {
        Container {
            view: ContainerView {
                state: State::Unknown,
                pid: None,
                command: Vec::new(),
                env: Default::default(),
                workdir: None,
                user: None,
                rootfs: None,
                resources: Default::default(),
                isolation: Vec::new(),
                network: "unknown".into(),
                log: self.config.log.clone(),
                capabilities: Default::default(),
                tmp_size: None,
                userns: None,
                seccomp: "unknown".into(),
                created_at: Timestamp::now(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                signal: None,
                reason: None,
                limitation: None,
                message: Some(q.message),
                sandbox: self.store.sandbox(&q.id),
                log_dir: Some(self.store.log_dir(&q.id)),
                bundle: self.store.bundle_dir(&q.id),
                status: Default::default(),
                init: false,
                stdin: false,
                tty: false,
                logs: None,
                labels: Default::default(),
                auto_remove: false,
                restart: Default::default(),
                health_check: None,
                health: None,
                image: None,
                image_digest: None,
                read_only: false,
                exposed_ports: Vec::new(),
                image_labels: Default::default(),
                id: q.id,
            },
            shim: None,
            pid_start_time: None,
            final_usage: Default::default(),
            request: None,
        }
    }

    pub(super) fn isolator_config(&self, container: &Container) -> ContainerConfig {
        ContainerConfig {
            id: container.id.clone(),
            command: container.command.clone(),
            env: container.env.clone(),
            resources: self
                .isolators
                .resource_table()
                .from_stored(&container.resources),
            sandbox: container.sandbox.clone(),
            rootfs: container.rootfs.clone(),
            runtime_dir: self.store.isolator_dir(&container.id),
        }
    }
}
