//! Rebuilding the manager from the runtime dir when the agent starts.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use berth_isolator::{ContainerConfig, ContainerId, RecoveredContainer};

use super::exit::cleanup_isolators;
use super::launch::limitation_reporter;
use super::{container_process, Manager, Slot, KILL_TIMEOUT};
use crate::container::{reason, Container, State};

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
        let records = self.store.load_all().map_err(|e| e.to_string())?;
        let mut containers = Vec::new();
        for record in records {
            match record {
                Ok(container) => containers.push(container),
                Err(e) => tracing::error!("skipping unreadable container record: {e}"),
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
        let known: BTreeSet<ContainerId> = containers.iter().map(|c| c.id.clone()).collect();
        for record in self.store.load_persistent().map_err(|e| e.to_string())? {
            match record {
                Ok(mut container) if !known.contains(&container.id) => {
                    if container.state != State::Exited {
                        mark_agent_lost(&mut container);
                        lost.push(container.clone());
                    }
                    if let Err(e) = std::fs::create_dir_all(self.store.state_dir(&container.id)) {
                        tracing::error!(id = %container.id, "recreate state dir: {e}");
                    }
                    containers.push(container);
                }
                Ok(_) => {}
                Err(e) => tracing::error!("skipping unreadable container record: {e}"),
            }
        }
        for id in self.store.unrecorded_state_ids() {
            tracing::warn!(%id, "removing the state dir of a launch interrupted before its record");
            if let Err(e) = self.store.remove(&id) {
                tracing::error!(%id, "{e}");
            }
        }
        let orphans = self.remove_leaks(&containers);

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
        for container in &lost {
            tracing::warn!(id = %container.id, "container lost with the host's runtime state (reboot?)");
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
                    self.slots.lock().unwrap().insert(id, slot);
                    summary.ended_before += 1;
                }
                State::Created => {
                    self.destroy_half_launched(container);
                    summary.destroyed += 1;
                }
                State::Running => {
                    let shim = container.shim.filter(|s| s.is_alive());
                    let slot = Slot::new(container.clone());
                    self.slots.lock().unwrap().insert(id.clone(), slot.clone());
                    match shim {
                        Some(shim) => {
                            let weak: Weak<Manager> = Arc::downgrade(self);
                            for isolator in self.isolators.select(&container.isolation) {
                                let reporter =
                                    limitation_reporter(weak.clone(), id.clone(), slot.clone());
                                if let Err(e) = isolator.watch(&id, reporter) {
                                    tracing::error!(%id, isolator = isolator.name(), "watch: {e}");
                                }
                            }
                            let manager = self.clone();
                            self.runtime
                                .spawn(async move { manager.watch_exit(id, shim).await });
                            summary.reattached += 1;
                        }
                        None => {
                            self.finalize(&id);
                            summary.ended_meanwhile += 1;
                        }
                    }
                }
            }
        }
        Ok(summary)
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
    fn remove_leaks(&self, containers: &[Container]) -> Vec<ContainerId> {
        let live: BTreeSet<String> = containers
            .iter()
            .filter(|c| c.state != State::Exited)
            .map(|c| c.id.to_string())
            .collect();
        let known: BTreeSet<String> = containers.iter().map(|c| c.id.to_string()).collect();
        // Mounts below a sandbox of a container that does not run (a loop
        // mount left by a crash, say) pin the sandbox: detach them.
        let sandboxes = self.config.work_dir.join("containers");
        if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut leaked: Vec<std::path::PathBuf> = mountinfo
                .lines()
                .filter_map(|line| line.split(' ').nth(4))
                .map(unescape_mount_path)
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
        for id in self.store.sandbox_ids() {
            if !known.contains(&id) {
                tracing::warn!(%id, "a sandbox with no container record is left in place for inspection");
            }
        }
        orphans
    }

    pub(super) fn isolator_config(&self, container: &Container) -> ContainerConfig {
        ContainerConfig {
            id: container.id.clone(),
            command: container.command.clone(),
            env: container.env.clone(),
            resources: container.resources.clone(),
            sandbox: container.sandbox.clone(),
            rootfs: container.rootfs.clone(),
            runtime_dir: self.store.isolator_dir(&container.id),
        }
    }
}

/// Mount points in mountinfo escape space, tab, newline and backslash as
/// octal (`\040`).
fn unescape_mount_path(field: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    std::path::PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path("/a\\040b/c"),
            std::path::PathBuf::from("/a b/c")
        );
        assert_eq!(
            unescape_mount_path("/plain"),
            std::path::PathBuf::from("/plain")
        );
    }
}
